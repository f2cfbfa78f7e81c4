"""Controller benchmark (`agent run`) on the local control plane with a real git remote.

For each N (default 100 and 1000) a fresh local cluster and a synthetic repo of N KServe models
(tests/integration/_repos.py) pushed to a bare `file://` remote, then:

  cold start        an in-process controller from start to its first full sync (clone, load,
                    LIST+WATCH every kind, apply everything)
  resync            steady state, nothing changed: one full re-plan from the watch cache
                    (median of 20), and the API requests it made; beside it, on the same objects,
                    the CLI `agent apply` no-op (a fresh process) and `kubectl diff --server-side`
  push -> applied   a commit changing one model's replicas, until the InferenceService shows
                    it: with the webhook (median of 5) and with polling every 5 s (median of 5)
  drift -> healed   `kubectl patch` of a field we own, until the controller restored it (median of 5)
  idle              a separate `agent run` process after its first sync: RSS and CPU over 30 s

Run:  .venv/bin/python bench/controller.py [N ...]      (default: 100 1000)
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.cluster import Cluster  # noqa: E402
from agent.controller import Controller, RunConfig  # noqa: E402
from devenv import cluster as devcluster  # noqa: E402
from tests.integration._repos import GIT, make_repo, model_path  # noqa: E402

AGENT = [sys.executable, "-m", "agent"]
KUBECTL = str(Path(sys.executable).parent / "kubectl")
SECRET = b"bench-secret"


def wait(check: Callable[[], Any], timeout: float = 300.0, interval: float = 0.02) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if check():
            return time.monotonic() - start
        time.sleep(interval)
    raise SystemExit(f"timed out after {timeout} s")


def min_replicas(cluster: Cluster, ns: str, name: str) -> Any:
    obj = cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), name, ns)
    return None if obj is None else obj["spec"]["predictor"].get("minReplicas")


class Repo:
    def __init__(self, root: Path, n: int, prefix: str) -> None:
        self.work = make_repo(root / "work", "bench-ctl", prefix, n)
        self.prefix = prefix
        self.bare = root / "remote.git"
        subprocess.run(["git", "clone", "-q", "--bare", str(self.work), str(self.bare)], check=True)
        subprocess.run(["git", "remote", "add", "origin", str(self.bare)], cwd=self.work, check=True)

    def set_replicas(self, i: int, replicas: int) -> str:
        import yaml

        path = model_path(self.work, self.prefix, i)
        docs = list(yaml.safe_load_all(path.read_text()))
        docs[0]["spec"].pop("autoscaling", None)
        docs[0]["spec"]["replicas"] = replicas
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
        subprocess.run([*GIT, "commit", "-qam", f"replicas {replicas}"], cwd=self.work, check=True)
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=self.work, check=True, capture_output=True)
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=self.work, check=True, capture_output=True,
                              text=True).stdout.strip()


def post_webhook(url: str, commit: str) -> None:
    body = json.dumps({"ref": "refs/heads/main", "after": commit}).encode()
    sig = "sha256=" + hmac.new(SECRET, body, hashlib.sha256).hexdigest()
    req = urllib.request.Request(f"{url}/webhook", data=body, method="POST", headers={
        "Content-Type": "application/json", "X-GitHub-Event": "push", "X-Hub-Signature-256": sig})
    with urllib.request.urlopen(req, timeout=10) as response:
        assert response.status == 202


def bench(n: int, work: Path) -> dict[str, Any]:
    row: dict[str, Any] = {"N": n}
    env = {**os.environ, "AGENT_CACHE_DIR": str(work / "cache")}
    info = devcluster.up(work / f"cluster-{n}")
    kc = str(info.kubeconfig)
    repo = Repo(work / f"repo-{n}", n, f"b{n}")
    secret = work / "secret"
    secret.write_bytes(SECRET)
    config = RunConfig(repo=f"file://{repo.bare}", interval=3600.0, resync=3600.0, kubeconfig=kc,
                       http_addr="127.0.0.1:0", webhook_secret_file=secret, cache_dir=work / f"mirrors-{n}")
    started = time.monotonic()
    controller = Controller(config)
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    try:
        wait(lambda: controller.ready, timeout=900)
        row["cold start s"] = time.monotonic() - started
        row["objects"] = len(controller.desired.objects) if controller.desired else 0
        # --- resync from the cache, once the cold start's follow-up passes are done (a held-back
        # canary is added after its stable revision turns Ready): steady state writes nothing ---
        def settled() -> bool:  # a pass that made no request and found nothing to write
            before = sum(controller.cluster.requests.values())
            controller.pass_once("resync")
            last = controller.outcomes[-1][1].plan if controller.outcomes else None
            return (sum(controller.cluster.requests.values()) == before and last is not None
                    and not last.has_changes and not any(note.phase == "Staged" for note in last.rollouts.values()))

        wait(settled, timeout=300, interval=0.5)
        times = []
        before = dict(controller.cluster.requests)
        for _ in range(20):
            t = time.monotonic()
            controller.pass_once("resync")
            times.append(time.monotonic() - t)
        after = dict(controller.cluster.requests)
        row["resync ms"] = statistics.median(times) * 1000
        row["resync requests"] = sum(after.values()) - sum(before.values())
        t = time.monotonic()
        subprocess.run([*AGENT, "apply", str(repo.work), "--kubeconfig", kc, "--no-events"], env=env, check=True,
                       capture_output=True, timeout=900)
        row["CLI no-op apply s"] = time.monotonic() - t
        rendered = subprocess.run([*AGENT, "render", str(repo.work), "--show-secrets"], env=env, check=True,
                                  capture_output=True, text=True, timeout=900).stdout
        manifests = work / f"manifests-{n}.yaml"
        manifests.write_text(rendered)
        t = time.monotonic()
        subprocess.run([KUBECTL, "--kubeconfig", kc, "diff", "--server-side", "--field-manager", "modelops-agent",
                        "--force-conflicts", "-f", str(manifests)], capture_output=True, timeout=1800)
        row["kubectl diff s"] = time.monotonic() - t
        # --- push -> applied ---
        assert controller.http is not None
        with Cluster.connect(kc) as cluster:
            hook = []
            for k in range(5):
                value = 10 + k
                commit = repo.set_replicas(0, value)
                t = time.monotonic()
                post_webhook(controller.http.url, commit)
                wait(lambda v=value: min_replicas(cluster, f"b{n}-0", "model-0000") == v)
                hook.append(time.monotonic() - t)
            row["webhook push->applied p50 s"] = statistics.median(hook)
            controller.config.interval = 5.0
            controller.request("poll")  # take the new interval now
            time.sleep(1)
            poll = []
            for k in range(5):
                value = 20 + k
                t = time.monotonic()
                repo.set_replicas(0, value)
                wait(lambda v=value: min_replicas(cluster, f"b{n}-0", "model-0000") == v)
                poll.append(time.monotonic() - t)
            row["poll (5 s) push->applied p50 s"] = statistics.median(poll)
            heal = []
            for k in range(5):  # a different object each time: one object patched again and again is a fight
                name = f"model-{3 * (k + 1):04d}"
                original = min_replicas(cluster, f"b{n}-0", name)
                subprocess.run([KUBECTL, "--kubeconfig", kc, "-n", f"b{n}-0", "patch", "inferenceservice",
                                name, "--type", "merge", "-p",
                                # KServe's admission refuses minReplicas above maxReplicas
                                json.dumps({"spec": {"predictor": {"minReplicas": 90 + k, "maxReplicas": 90 + k}}})],
                               check=True, capture_output=True, timeout=60)
                t = time.monotonic()
                wait(lambda name=name, original=original: min_replicas(cluster, f"b{n}-0", name) == original)
                heal.append(time.monotonic() - t)
            row["drift->healed p50 s"] = statistics.median(heal)
    finally:
        controller.stop()
        thread.join(timeout=60)
    # --- idle process ---
    port = _free_port()
    row["idle RSS MiB"], row["idle CPU %"] = idle([*AGENT, "run", "--repo", f"file://{repo.bare}", "--kubeconfig", kc,
                                                   "--interval", "60s", "--http-addr", f"127.0.0.1:{port}",
                                                   "--cache-dir", str(work / f"idle-{n}")], env, port)
    devcluster.down(work / f"cluster-{n}")
    return row


def idle(cmd: list[str], env: dict[str, str], port: int) -> tuple[float, float]:
    """RSS (MiB) and CPU (% of a core over 30 s) of an `agent run` process once ready."""
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        def is_ready() -> bool:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as r:
                    return bool(r.status == 200)
            except OSError:
                return False
        wait(is_ready, timeout=900, interval=0.2)
        time.sleep(5)
        cpu0, t0 = _cpu(proc.pid), time.monotonic()
        time.sleep(30)
        cpu1, t1 = _cpu(proc.pid), time.monotonic()
        return _rss(proc.pid) / 1024, 100 * (cpu1 - cpu0) / (t1 - t0)
    finally:
        proc.terminate()
        proc.wait(timeout=60)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _rss(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("sizes", nargs="*", type=int, default=[100, 1000])
    sizes = parser.parse_args().sizes
    work = Path(tempfile.mkdtemp(prefix="bench-controller-"))
    rows = []
    try:
        for n in sizes:
            rows.append(bench(n, work))
            print(json.dumps(rows[-1]), file=sys.stderr)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    cols = ["N", "objects", "cold start s", "resync ms", "resync requests", "CLI no-op apply s", "kubectl diff s",
            "webhook push->applied p50 s", "poll (5 s) push->applied p50 s", "drift->healed p50 s", "idle RSS MiB",
            "idle CPU %"]
    print("| " + " | ".join(cols) + " | resync vs CLI no-op | resync vs kubectl diff |")
    print("|" + "---|" * (len(cols) + 2))
    for r in rows:
        cells = [f"{r[c]:.2f}" if isinstance(r[c], float) else str(r[c]) for c in cols]
        ratio_cli = r["CLI no-op apply s"] / max(r["resync ms"] / 1000, 1e-6)
        ratio_kubectl = r["kubectl diff s"] / max(r["resync ms"] / 1000, 1e-6)
        print("| " + " | ".join(cells) + f" | {ratio_cli:.0f}x | {ratio_kubectl:.0f}x |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
