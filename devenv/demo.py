"""`devenv demo`: the whole story on a laptop in about a minute.

Starts the local control plane, applies the example model repo, shows status and the audit
log, then simulates a PR that raises the fraud canary and shows its diff against the cluster.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ParamSpec

from agent import output
from agent.audit import verify
from agent.cluster import Cluster
from agent.controller import Controller, RunConfig
from agent.forge import ForgeOptions, open_forge, repo_ref
from agent.promotion import Change
from agent.source import Credentials, run_git
from devenv import _agent
from devenv import cluster as devcluster
from devenv.cluster import repo_root

GIT = ["git", "-c", "user.name=Demo Engineer", "-c", "user.email=demo@example.com", "-c", "init.defaultBranch=main"]


def _say(title: str) -> None:
    on, off = ("\033[1m", "\033[0m") if sys.stdout.isatty() else ("", "")
    print(f"\n{on}== {title}{off}", flush=True)


def _git(repo: Path, *args: str, env: dict[str, str] | None = None, token: tuple[str, str] | None = None) -> None:
    """One git command in `repo` (the agent's way of running git); `token`: a (user, token) its
    stderr never shows."""
    run_git([*GIT, *args], env=os.environ if env is None else env, timeout=60, cwd=repo,
            secrets=() if token is None else (token, token[1]))


_P = ParamSpec("_P")


def _with_demo_key(run: Callable[_P, int]) -> Callable[_P, int]:
    """The example repo's Secret is SOPS-encrypted for the DEMO age key of examples/keys: every
    agent step of the demo, in this process or a child, decrypts it with that key."""
    @functools.wraps(run)
    def wrapped(*args: _P.args, **kwargs: _P.kwargs) -> int:
        previous = os.environ.get("SOPS_AGE_KEY_FILE")
        os.environ["SOPS_AGE_KEY_FILE"] = str(repo_root() / "examples" / "keys" / "demo.agekey")
        try:
            return run(*args, **kwargs)
        finally:
            if previous is None:
                os.environ.pop("SOPS_AGE_KEY_FILE", None)
            else:
                os.environ["SOPS_AGE_KEY_FILE"] = previous
    return wrapped


@_with_demo_key
def run_demo(directory: Path, keep: bool = False) -> int:
    directory = directory.resolve()
    example = repo_root() / "examples" / "model-repo"
    color = sys.stdout.isatty()

    _say("1. Local control plane (etcd + kube-apiserver + controllers + kwok), built from Go modules")
    info = devcluster.up(directory / "cluster")
    print(f"kubeconfig: {info.kubeconfig}")
    finished = False
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
            desired = _agent.load(repo)
            outcome = _agent.apply(desired, cluster, audit_path)
            print(output.text(outcome.plan, color=color, show_diff=False))
            print(f"{sum(1 for r in outcome.report.results if r.outcome == 'applied')} objects applied, "
                  f"{len(outcome.report.failed)} failed; requests: {output.plain(dict(sorted(outcome.requests.items())))}")

            _say("3. agent status (waiting up to 90 s for every model to settle)")
            status = _agent.settle(desired, cluster, timeout=90)
            for m in status["models"]:
                canary = f" canary {m['canary']['version']}@{m['canary']['traffic']}%" if m["canary"] else ""
                print(f"  {m['namespace']}/{m['name']}: version {m['version']}{canary}, "
                      f"synced {output.plain(m['synced'])}, health {m['health']}: {m['message']}")
            print("  (this cluster runs no KServe controller: a kwok Stage plays its status updates, so an\n"
                  "   InferenceService turns Ready; it runs no metrics server, so an HPA scaling on CPU reports\n"
                  "   Degraded: it would be Healthy in production)")

            _say("4. A no-op reconcile: nothing to write")
            before = sum(cluster.requests.values())
            again = _agent.apply(desired, cluster, audit_path)
            print(f"changes: {'some' if again.plan.has_changes else 'none'}; requests made: "
                  f"{sum(cluster.requests.values()) - before}")

            _say(f"5. Audit log {audit_path} (last 3 records)")
            for line in audit_path.read_text().splitlines()[-3:]:
                print("  " + line[:200] + ("..." if len(line) > 200 else ""))
            print("  verify: " + verify(audit_path).message)

            _say("6. A PR raises the fraud-scorer canary from 10% to 25%: agent diff against the cluster")
            model = repo / "teams" / "fraud" / "models" / "fraud-scorer.yaml"
            model.write_text(re.sub(r"traffic: 10\b", "traffic: 25", model.read_text(), count=1))
            _git(repo, "commit", "-qam", "fraud-scorer: canary 13 to 25%")
            plan = _agent.plan(_agent.load(repo), cluster)
            print(output.text(plan, color=color))
            print("(exit code of `agent diff` here would be 1: changes)")
        finished = True
    finally:
        if not keep:
            devcluster.down(directory / "cluster")
        elif not finished:  # the next steps are not printed: at least how to stop what --keep leaves running
            print(f"\ncluster left running (--keep); stop it with: devenv cluster down --dir "
                  f"{_shown(directory / 'cluster')}")
    _say("What next")
    print(next_steps(directory, kept=keep))
    return 0


# --- `devenv demo --promotion`: the PR-driven story against a real forge -------------------------

_DEMO_SECRET = "demo-webhook-secret"


def _without_canary(model: Path) -> None:
    """The demo starts from fraud-scorer serving 12 alone, so the PR's canary is the change."""
    text = model.read_text()
    model.write_text(re.sub(r"\n  canary:\n    version: \"13\"\n    traffic: 10[^\n]*", "", text, count=1))


@_with_demo_key
def run_promotion_demo(directory: Path, keep: bool = False) -> int:
    """PR opened by `agent promote --open-pr`, plan commented by the PR check, merged on the
    forge, applied by the controller through Gitea's push webhook, audited with the PR."""
    directory = directory.resolve()
    example = repo_root() / "examples" / "model-repo"
    _say("1. Local control plane and a local Gitea (HTTPS with its own CA, an admin token)")
    info = devcluster.up(directory / "cluster")
    forge_info = devcluster.forge_up(directory / "forge")
    print(f"kubeconfig: {info.kubeconfig}\nforge: {forge_info.url} (CA {forge_info.ca_file})")
    controller: Controller | None = None
    thread: threading.Thread | None = None
    finished = False
    try:
        name = f"model-repo-{int(time.time())}"
        url = devcluster.forge_create_repo(forge_info, name)
        repo = directory / name
        shutil.copytree(example, repo)
        _without_canary(repo / "teams" / "fraud" / "models" / "fraud-scorer.yaml")
        env = forge_info.git_env()
        for args in (["init", "-q", "-b", "main"], ["add", "-A"], ["commit", "-qm", "Initial model repo"],
                     ["remote", "add", "origin", url], ["push", "-q", "origin", "main"]):
            _git(repo, *args, env=env, token=(forge_info.admin_user, forge_info.token))
        print(f"pushed the example repo to {url}")

        _say("2. agent run: the controller follows the repo over HTTPS (token + CA), webhook on")
        secret = directory / "webhook-secret"
        secret.write_text(_DEMO_SECRET + "\n")
        audit_path = directory / "promotion-audit.jsonl"
        config = RunConfig(repo=url, interval=600.0, resync=600.0, kubeconfig=str(info.kubeconfig),
                           http_addr="127.0.0.1:0", webhook_secret_file=secret, cache_dir=directory / "mirrors",
                           audit_log=audit_path,
                           credentials=Credentials(token_file=forge_info.token_file, username=forge_info.admin_user,
                                                   ca_file=forge_info.ca_file))
        controller = Controller(config)
        thread = threading.Thread(target=controller.run, daemon=True, name="demo-controller")
        thread.start()
        deadline = time.monotonic() + 120
        while not controller.ready and time.monotonic() < deadline:
            time.sleep(0.2)
        if not controller.ready or controller.http is None:
            print("the controller did not become ready in 120 s", file=sys.stderr)
            return 2
        forge = open_forge(repo_ref(url, "gitea", forge_info.api_url), forge_info.token, ca_file=forge_info.ca_file)
        try:
            forge.add_push_webhook(f"{controller.http.url}/webhook", _DEMO_SECRET)
            print(f"first commit applied; Gitea's push webhook -> {controller.http.url}/webhook")

            _say("3. agent promote fraud-scorer --canary 13 --traffic 10 --open-pr")
            options = ForgeOptions(kind="gitea", token_file=forge_info.token_file, ca_file=forge_info.ca_file)
            _agent.promote(repo, "fraud-scorer", Change("canary", "13", 10), "promote/fraud-scorer-13", options)
            pr = forge.find_pull("promote/fraud-scorer-13", "main")
            if pr is None:
                print("the PR was not found on the forge", file=sys.stderr)
                return 2

            _say(f"4. The PR check: agent diff --base main -o markdown, kept as one comment on PR #{pr.number}")
            plan = directory / "plan.md"
            with plan.open("w") as out:
                subprocess.run([sys.executable, "-m", "agent", "diff", str(repo), "--base", "main", "-o", "markdown"],
                               stdout=out, check=False, timeout=120)
            _agent.comment(pr.number, plan, url,
                           dataclasses.replace(options, api_url=forge_info.api_url))

            _say(f"5. PR #{pr.number} merged on the forge; the push webhook wakes the controller")
            merge = forge.merge_pull(pr.number)
            merged = time.monotonic()
            print(f"merge commit {merge[:12]}")
            with Cluster.connect(str(info.kubeconfig)) as cluster:
                kind = cluster.kind("serving.kserve.io/v1beta1", "InferenceService")
                traffic = None
                while time.monotonic() - merged < 60:
                    live = cluster.get(kind, "fraud-scorer", "fraud")
                    traffic = live and live["spec"]["predictor"].get("canaryTrafficPercent")
                    if traffic == 10:
                        break
                    time.sleep(0.2)
            print(f"InferenceService fraud/fraud-scorer canaryTrafficPercent={traffic}, "
                  f"{time.monotonic() - merged:.1f} s after the merge (polling is every 10 minutes)")

            _say(f"6. The audit record of the rollout ({audit_path})")
            time.sleep(0.5)
            for line in audit_path.read_text().splitlines():
                record = json.loads(line)
                if record.get("event") == "reconcile" and record.get("commit") == merge:
                    print(json.dumps({k: record.get(k) for k in ("commit", "author", "pull_request", "result",
                                                                 "counts")}, indent=2))
            print("  verify: " + verify(audit_path).message)
        finally:
            forge.close()
        finished = True
    finally:
        if controller is not None:
            controller.stop()
        if thread is not None:
            thread.join(timeout=30)
        if not keep:
            devcluster.forge_down(directory / "forge")
            devcluster.down(directory / "cluster")
        elif not finished:
            print(f"\nleft running (--keep); stop with: devenv cluster down --dir {_shown(directory / 'cluster')}; "
                  f"devenv cluster down --dir {_shown(directory / 'forge')}")
    _say("What next")
    print(promotion_next_steps(directory, repo, url, kept=keep, forge=forge_info))
    return 0


# --- what to do next ------------------------------------------------------------------------------

def _shown(path: Path) -> str:
    """A path for a command line to copy: relative to the working directory when below it (with
    a `/`, so `agent rollout status` takes it as the PATH), quoted for a shell."""
    path = path.resolve()
    try:
        text = str(path.relative_to(Path.cwd().resolve()))
        text = text if "/" in text else f"./{text}"
    except ValueError:
        text = str(path)
    return shlex.quote(text)


_ALIGNED = 64  # with a longer command, each comment goes on the line above its command


def _commands(rows: list[tuple[str, str]]) -> list[str]:
    """`  command   # what it shows`, the comments aligned; above the commands when one is long."""
    width = max(len(command) for command, _ in rows)
    if width > _ALIGNED:
        return [line for command, why in rows for line in (f"  # {why}", f"  {command}")]
    return [f"  {command:<{width}}  # {why}" for command, why in rows]


def _on_path() -> list[str]:
    """A note when the `agent` of the commands is not the one on the PATH (`make demo` runs
    .venv/bin/devenv, whose `agent` is .venv/bin/agent): how to get it there (with `devenv`)."""
    here = Path(sys.executable).parent / "agent"
    found = shutil.which("agent")
    if not here.is_file() or (found is not None and os.path.samefile(found, here)):
        return []
    return [f"(`agent` is {_shown(here)}: `source {_shown(here.parent / 'activate')}` puts it on your PATH)"]


def _demo_key() -> str:
    """The shell line that lets the agent open the example's SOPS-encrypted Secret, as the demo did."""
    return f"  export SOPS_AGE_KEY_FILE={_shown(repo_root() / 'examples' / 'keys' / 'demo.agekey')}"


def next_steps(directory: Path, *, kept: bool) -> str:
    """The end of `devenv demo`: commands to try on the demo's copy of the example repo, against
    the cluster when --keep left it running (with its kubeconfig and how to stop it), else
    offline, with how to keep it next time."""
    repo, audit, cluster = _shown(directory / "model-repo"), _shown(directory / "audit.jsonl"), directory / "cluster"
    if not kept:
        return "\n".join([
            f"The cluster is stopped. `devenv demo --keep --dir {_shown(directory)}` leaves it running, to try agent "
            "status, diff, apply and rollout status against it.",
            f"Without a cluster, on the demo's copy of the example repo ({repo}; its Secret is SOPS-encrypted for "
            "the demo age key):",
            _demo_key(),
            *_commands([
                (f"agent validate {repo}", "check every file of the repo"),
                (f"agent render {repo}", "the Kubernetes objects it renders to"),
                (f"agent diff {repo} --base HEAD~1", "what its last commit changes: the fraud-scorer canary to 25%"),
                (f"agent audit verify {audit}", "the demo's audit log, hash chain checked"),
            ]),
            *_on_path(),
            "Your own model repo: README.md (The model repo) and docs/spec.md.",
        ])
    kubeconfig = _shown(cluster / "kubeconfig")
    return "\n".join([
        f"The cluster is still running (--keep). Its kubeconfig: {kubeconfig}",
        "In your shell (the example's Secret is SOPS-encrypted for the demo age key):",
        f"  export KUBECONFIG={kubeconfig}",
        _demo_key(),
        f"Then try, on the demo's copy of the example repo ({repo}; its last commit, the fraud-scorer canary at "
        "25%, is not applied yet):",
        *_commands([
            (f"agent status {repo}", "per model: synced, health, last apply"),
            (f"agent diff {repo}", "the canary change against the cluster (exit 1: changes)"),
            (f"agent apply {repo} --audit-log {audit}", "apply it, audited"),
            (f"agent rollout status {repo}", "progressive rollouts (spec.rollout, docs/rollouts.md)"),
            (f"agent audit verify {audit}", "the audit log, hash chain checked"),
        ]),
        f"Stop the cluster: devenv cluster down --dir {_shown(cluster)}",
        *_on_path(),
    ])


def promotion_next_steps(directory: Path, repo: Path, url: str, *, kept: bool, forge: Any) -> str:
    """The end of `devenv demo --promotion`: what to try on the clone and the forge the demo
    used, when --keep left them running (kubeconfig, forge URL, token and CA file, how to stop
    both), else offline, with how to keep them next time."""
    clone, audit = _shown(repo), _shown(directory / "promotion-audit.jsonl")
    offline = [
        (f"agent promote fraud-scorer {clone} --stable --dry-run", "the next promotion: 13 becomes stable"),
        (f"agent audit verify {audit}", "the audit log, hash chain checked"),
    ]
    if not kept:
        return "\n".join([
            f"The cluster and the forge are stopped. `devenv demo --promotion --keep --dir {_shown(directory)}` leaves "
            "them running, to try agent status, diff and run against them.",
            f"Without them, in the demo's clone ({clone}; its Secret is SOPS-encrypted for the demo age key):",
            _demo_key(),
            *_commands(offline),
            *_on_path(),
        ])
    cluster, forge_dir = directory / "cluster", directory / "forge"
    kubeconfig, token, ca = _shown(cluster / "kubeconfig"), _shown(forge.token_file), _shown(forge.ca_file)
    return "\n".join([
        f"The cluster and the forge are still running (--keep). The cluster's kubeconfig: {kubeconfig}",
        "In your shell (the example's Secret is SOPS-encrypted for the demo age key):",
        f"  export KUBECONFIG={kubeconfig}",
        _demo_key(),
        f"The forge: {forge.url} (user {forge.admin_user}, API token in {token}, CA {ca})",
        f"Then try, in the demo's clone ({clone}):",
        *_commands([
            (f"agent status {clone}", "per model: synced, health, last apply"),
            (f"agent diff {clone}", "the merged PR is applied: no change (exit 0)"),
            *offline,
            (f"agent run --repo {shlex.quote(url)} --git-token-file {token} --git-ca-file {ca} "
             f"--audit-log {audit} --http-addr 127.0.0.1:8080",
             "the controller again, following the forge (Ctrl-C stops it)"),
        ]),
        f"Stop them: devenv cluster down --dir {_shown(cluster)}; devenv cluster down --dir {_shown(forge_dir)}",
        *_on_path(),
    ])
