"""`agent demo`: the whole story on a laptop in about a minute.

Starts the local control plane, applies the example model repo, shows status and the audit
log, then simulates a PR that raises the fraud canary and shows its diff against the cluster.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

from agent import devcluster, output
from agent.audit import verify
from agent.cluster import Cluster
from agent.devcluster import repo_root
from agent.pipeline import load_desired
from agent.reconcile import Options, observe, plan_against, reconcile
from agent.status import wait_healthy

GIT = ["git", "-c", "user.name=Demo Engineer", "-c", "user.email=demo@example.com", "-c", "init.defaultBranch=main"]


def _say(title: str) -> None:
    on, off = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{on}== {title}{off}", flush=True)


def _git(repo: Path, *args: str) -> None:
    subprocess.run([*GIT, *args], cwd=repo, check=True, capture_output=True)


def run_demo(directory: Path, keep: bool = False) -> int:
    directory = directory.resolve()
    example = repo_root() / "examples" / "model-repo"
    color = sys.stdout.isatty()

    _say("1. Local control plane (etcd + kube-apiserver + controllers + kwok), built from Go modules")
    info = devcluster.up(directory / "cluster")
    print(f"kubeconfig: {info.kubeconfig}")
    try:
        repo = directory / "model-repo"
        if repo.exists():
            shutil.rmtree(repo)
        shutil.copytree(example, repo)
        _git(repo, "init", "-q")
        _git(repo, "add", "-A")
        _git(repo, "commit", "-qm", "Initial model repo")
        audit_path = directory / "audit.jsonl"

        with Cluster.connect(str(info.kubeconfig)) as cluster:
            _say("2. agent apply: the example repo at HEAD")
            desired = load_desired(repo, "HEAD")
            outcome = reconcile(desired, cluster, Options(audit_log=audit_path))
            print(output.text(outcome.plan, color=color, show_diff=False))
            print(f"{sum(1 for r in outcome.report.results if r.outcome == 'applied')} objects applied, "
                  f"{len(outcome.report.failed)} failed; requests {dict(sorted(outcome.requests.items()))}")

            _say("3. agent status (waiting up to 90 s for every model to settle)")
            status = wait_healthy(desired, cluster, timeout=90)
            for m in status["models"]:
                canary = f" canary {m['canary']['version']}@{m['canary']['traffic']}%" if m["canary"] else ""
                print(f"  {m['namespace']}/{m['name']}: version {m['version']}{canary}, "
                      f"synced={m['synced']}, health={m['health']} {m['message']}")
            print("  (this cluster runs no KServe controller, so InferenceServices stay Unknown, and no metrics\n"
                  "   server, so an HPA scaling on CPU reports Degraded: both would be Healthy in production)")

            _say("4. A no-op reconcile: nothing to write")
            before = sum(cluster.requests.values())
            again = reconcile(desired, cluster, Options(audit_log=audit_path))
            print(f"changes: {again.plan.has_changes}; requests made: {sum(cluster.requests.values()) - before}")

            _say(f"5. Audit log {audit_path} (last 3 records)")
            for line in audit_path.read_text().splitlines()[-3:]:
                print("  " + line[:200] + ("..." if len(line) > 200 else ""))
            print("  verify: " + verify(audit_path).message)

            _say("6. A PR raises the fraud-scorer canary from 10% to 25%: agent diff against the cluster")
            model = repo / "teams" / "fraud" / "models" / "fraud-scorer.yaml"
            model.write_text(re.sub(r"traffic: 10\b", "traffic: 25", model.read_text(), count=1))
            _git(repo, "commit", "-qam", "fraud-scorer: canary 13 to 25%")
            proposed = load_desired(repo, "HEAD")
            plan = plan_against(cluster, proposed, observe(cluster, proposed.objects, proposed.spec.config.name))
            print(output.text(plan, color=color))
            print("(exit code of `agent diff` here would be 1: changes)")
    finally:
        if keep:
            print(f"\ncluster left running; stop it with: agent devcluster down --dir {directory / 'cluster'}")
        else:
            devcluster.down(directory / "cluster")
    return 0
