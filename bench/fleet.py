"""Fleet benchmark (`agent run` over several clusters) on three local control planes.

For each N (default 1000) three fresh local clusters (`devenv fleet`: staging, prod-1, prod-2,
one kubeconfig with a context each) and a synthetic repo of N KServe models
(tests/integration/_repos.py) with three environments of one cluster each (`staging`,
`prod-eu` on prod-1, `prod-us` on prod-2: no waves), pushed to a bare `file://` remote, then:

  cold start        an in-process Fleet from start to every member's first full sync
  resync            steady state, nothing changed: each member's full re-plan from its watch
                    cache (median of 20 per member) and the API requests each made
  push -> applied   a commit changing one model's replicas (every environment), until the
                    InferenceService shows it in EVERY cluster, with the webhook (median of 5)
  idle              separate `agent run` processes after their first sync, RSS and CPU over
                    30 s: the fleet of three clusters, and the same repo and process driving one
                    cluster (`--cluster staging`, the one-agent-per-cluster way)

Run:  .venv/bin/python bench/fleet.py [N ...]      (default: 1000)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.cluster import Cluster  # noqa: E402
from agent.controller import Fleet, RunConfig  # noqa: E402
from bench import controller as controller_bench  # noqa: E402
from bench.controller import AGENT, SECRET, _free_port, idle, min_replicas, post_webhook, wait  # noqa: E402
from devenv import fleet as devfleet  # noqa: E402
from tests.integration._repos import GIT  # noqa: E402

ENVIRONMENTS = {"staging": "staging", "prod-eu": "prod-1", "prod-us": "prod-2"}  # environment -> cluster


class Repo(controller_bench.Repo):
    """bench/controller.py's repo of N models, with an Environment per cluster pushed on top."""

    def __init__(self, root: Path, n: int, prefix: str) -> None:
        super().__init__(root, n, prefix)
        for env, cluster in ENVIRONMENTS.items():
            path = self.work / "environments" / f"{env}.yaml"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(yaml.safe_dump({"apiVersion": "modelops.dev/v1alpha1", "kind": "Environment",
                                            "metadata": {"name": env}, "spec": {"clusters": [cluster]}}))
        subprocess.run([*GIT, "add", "-A"], cwd=self.work, check=True)
        subprocess.run([*GIT, "commit", "-qm", "environments"], cwd=self.work, check=True)
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=self.work, check=True, capture_output=True)


def _settled(controller: Any) -> bool:
    """A pass that made no request and found nothing to write (the cold start's follow-up
    passes, which add held-back canaries once their stable revisions are Ready, are over)."""
    before = sum(controller.cluster.requests.values())
    controller.pass_once("resync")
    last = controller.outcomes[-1][1].plan if controller.outcomes else None
    return (sum(controller.cluster.requests.values()) == before and last is not None
            and not last.has_changes and not any(note.phase == "Staged" for note in last.rollouts.values()))


def bench(n: int, work: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"N": n, "clusters": len(ENVIRONMENTS)}
    env = {**os.environ, "AGENT_CACHE_DIR": str(work / "cache")}
    t = time.monotonic()
    clusters = devfleet.up(work / f"fleet-{n}")
    row["clusters up s"] = time.monotonic() - t
    kc = str(clusters.kubeconfig)
    repo = Repo(work / f"repo-{n}", n, f"f{n}")
    secret = work / "secret"
    secret.write_bytes(SECRET)
    config = RunConfig(repo=f"file://{repo.bare}", interval=3600.0, resync=3600.0, kubeconfig=kc,
                       http_addr="127.0.0.1:0", webhook_secret_file=secret, cache_dir=work / f"mirrors-{n}")
    started = time.monotonic()
    fleet = Fleet(config)
    thread = threading.Thread(target=fleet.run, daemon=True)
    thread.start()
    try:
        wanted = {(e, c) for e, c in ENVIRONMENTS.items()}

        def all_ready() -> bool:
            return set(fleet.members) >= wanted and all(fleet.members[k].ready for k in wanted)

        wait(all_ready, timeout=1800)
        row["cold start s"] = time.monotonic() - started
        controllers = [fleet.members[k].controller for k in sorted(wanted)]
        row["objects per cluster"] = len(controllers[0].desired.objects) if controllers[0].desired else 0
        times: list[float] = []
        requests: list[int] = []
        for controller in controllers:
            wait(lambda c=controller: _settled(c), timeout=600, interval=0.5)
            before = sum(controller.cluster.requests.values())
            for _ in range(20):
                t = time.monotonic()
                controller.pass_once("resync")
                times.append(time.monotonic() - t)
            requests.append(sum(controller.cluster.requests.values()) - before)
        row["resync ms (p50, any cluster)"] = statistics.median(times) * 1000
        row["resync requests per cluster (20 passes)"] = "/".join(str(r) for r in requests)
        assert fleet.http is not None
        admins = {name: Cluster.connect(kc, name) for name in ENVIRONMENTS.values()}
        try:
            hook, slowest = [], []
            for k in range(5):
                value = 10 + k
                commit = repo.set_replicas(0, value)
                t = time.monotonic()
                post_webhook(fleet.http.url, commit)
                done: dict[str, float] = {}

                def everywhere(v: int = value, done: dict[str, float] = done, t: float = t) -> bool:
                    for name, cluster in admins.items():
                        if name not in done and min_replicas(cluster, f"f{n}-0", "model-0000") == v:
                            done[name] = time.monotonic() - t
                    return len(done) == len(admins)

                wait(everywhere, timeout=120)
                hook.append(max(done.values()))
                slowest.append(max(done, key=lambda name: done[name]))
            row["webhook push->applied in every cluster p50 s"] = statistics.median(hook)
        finally:
            for cluster in admins.values():
                cluster.close()
    finally:
        fleet.stop()
        thread.join(timeout=120)
    base = [*AGENT, "run", "--repo", f"file://{repo.bare}", "--kubeconfig", kc, "--interval", "60s"]
    port = _free_port()
    rss, cpu = idle([*base, "--http-addr", f"127.0.0.1:{port}", "--cache-dir", str(work / f"idle-all-{n}")],
                     env, port)
    row["idle RSS MiB (3 clusters)"], row["idle CPU % (3 clusters)"] = rss, cpu
    port = _free_port()
    rss1, cpu1 = idle([*base, "--cluster", "staging", "--http-addr", f"127.0.0.1:{port}", "--cache-dir",
                        str(work / f"idle-one-{n}")], env, port)
    row["idle RSS MiB (1 cluster)"], row["idle CPU % (1 cluster)"] = rss1, cpu1
    row["RSS 3 vs 1"] = rss / max(rss1, 1e-6)
    devfleet.down(work / f"fleet-{n}")
    return row


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="*", type=int, default=[1000])
    sizes = parser.parse_args().sizes
    work = Path(tempfile.mkdtemp(prefix="bench-fleet-"))
    rows = []
    try:
        for n in sizes:
            rows.append(bench(n, work))
            print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        for n in sizes:
            devfleet.down(work / f"fleet-{n}")
        shutil.rmtree(work, ignore_errors=True)
    cols = list(rows[0])
    print("| " + " | ".join(cols) + " |")
    print("|" + "---|" * len(cols))
    for r in rows:
        print("| " + " | ".join(f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
