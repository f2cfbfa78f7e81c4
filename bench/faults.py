"""Fault benchmark of the apply path on the local control plane (issue #7's figures).

On a fresh local cluster, with a synthetic repo of N KServe models (tests/integration/_repos.py):

  kill agent      `agent apply --audit-log` is SIGKILLed after K object results were logged;
                  counts the objects written, the orphans (objects carrying the target's label
                  that the inventory does not list: prune could never find them), then runs a
                  recovery apply and a no-op apply and prints the no-op's requests by verb
  audit overhead  the initial apply of the same repo with and without --audit-log (intent and
                  result records per object)
  silent server   `agent diff` against a TCP server that accepts and never answers, with the
                  default timeouts: seconds until exit 2
  paused server   the same against the cluster's kube-apiserver stopped with SIGSTOP
  killed server   kube-apiserver SIGKILLed after 30 object results of an apply: seconds from
                  its death to the agent's exit (the breaker, not every object's retries)

Run:  .venv/bin/python bench/faults.py [--models N]      (default 300)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from agent.cluster import Cluster, load_inventory  # noqa: E402
from agent.engine import load_desired, selector  # noqa: E402
from agent.render import object_key  # noqa: E402
from devenv import cluster as devcluster  # noqa: E402
from tests.integration._repos import make_repo  # noqa: E402

AGENT = [sys.executable, "-m", "agent"]


def records(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    out = []
    for line in log.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a line being written
            out.append(json.loads(line))
    return out


def wait_results(proc: subprocess.Popen[bytes], log: Path, count: int) -> None:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and proc.poll() is None:
        if sum(1 for r in records(log) if r.get("event") == "object") >= count:
            return
        time.sleep(0.02)
    raise SystemExit(f"the apply ended before {count} results were logged: use more models")


def labelled(kubeconfig: Path, repo: Path, target: str) -> set[tuple[str, str, str, str]]:
    desired = load_desired(repo, cached=False)
    keys = set()
    with Cluster.connect(str(kubeconfig)) as cluster:
        for api_version, kind in sorted({(o["apiVersion"], o["kind"]) for o in desired.objects}):
            keys |= {object_key(o) for o in cluster.list(cluster.kind(api_version, kind), selector(target))}
    return keys


def timed(cmd: list[str], env: dict[str, str]) -> tuple[float, int, str]:
    start = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=1800)
    return time.monotonic() - start, proc.returncode, proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", type=int, default=300)
    n = parser.parse_args().models
    work = Path(tempfile.mkdtemp(prefix="bench-faults-"))
    env = {**os.environ, "AGENT_CACHE_DIR": str(work / "cache")}
    rows: list[tuple[str, str]] = []
    info = devcluster.up(work / "cluster")
    try:
        kc = str(info.kubeconfig)
        # --- kill the agent mid-apply, at three points ---
        for k, after in enumerate((20, 100, 250)):
            target = f"kill{k}"
            repo = make_repo(work / target, target, target, n)
            log = work / f"{target}.jsonl"
            args = [*AGENT, "apply", str(repo), "--revision", "HEAD", "--kubeconfig", kc, "--audit-log", str(log)]
            proc = subprocess.Popen(args, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            wait_results(proc, log, after)
            proc.kill()
            proc.wait()
            written = labelled(info.kubeconfig, repo, target)
            with Cluster.connect(kc) as cluster:
                inventory = load_inventory(cluster, target)
            orphans = len(written - set(inventory.entries))
            subprocess.run(args, env=env, check=True, capture_output=True, timeout=1800)
            noop = json.loads(subprocess.run([*args, "-o", "json"], env=env, check=True, capture_output=True,
                                             text=True, timeout=1800).stdout)["requests"]
            rows.append((f"SIGKILL after {after} results: objects written / orphans / no-op after recovery",
                         f"{len(written)} / {orphans} / {', '.join(f'{v} {c}' for v, c in sorted(noop.items()))}"))
        # --- audit overhead on an initial apply ---
        for label, extra in (("without", []), ("with", ["--audit-log", str(work / "overhead.jsonl")])):
            target = f"audit-{label}"
            repo = make_repo(work / target, target, target, n)
            secs, code, _ = timed([*AGENT, "apply", str(repo), "--revision", "HEAD", "--kubeconfig", kc, *extra], env)
            rows.append((f"initial apply of {n} models {label} --audit-log (s)", f"{secs:.2f} (exit {code})"))
        # --- a server that accepts and never answers ---
        listener = socket.socket()
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        held: list[socket.socket] = []
        stop = threading.Event()

        def serve() -> None:
            listener.settimeout(0.2)
            while not stop.is_set():
                try:
                    held.append(listener.accept()[0])
                except OSError:
                    continue

        thread = threading.Thread(target=serve, daemon=True)
        thread.start()
        silent = work / "silent.kubeconfig"
        silent.write_text(f"apiVersion: v1\nkind: Config\nclusters: [{{name: c, cluster: {{server: 'http://127.0.0.1:"
                          f"{listener.getsockname()[1]}'}}}}]\nusers: [{{name: u, user: {{token: t}}}}]\ncontexts: "
                          "[{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n")
        repo = work / "audit-without"
        secs, code, _ = timed([*AGENT, "diff", str(repo), "--kubeconfig", str(silent)], env)
        rows.append(("`agent diff` against a silent server, default timeouts (s)", f"{secs:.1f} (exit {code})"))
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        listener.close()
        # --- the cluster's API server paused, then killed ---
        state = json.loads((work / "cluster" / "state.json").read_text())
        pid = int(next(p["pid"] for p in state["processes"] if p["name"] == "kube-apiserver"))
        os.kill(pid, signal.SIGSTOP)
        try:
            secs, code, _ = timed([*AGENT, "diff", str(repo), "--kubeconfig", kc], env)
        finally:
            os.kill(pid, signal.SIGCONT)
        rows.append(("`agent diff` against a SIGSTOPped kube-apiserver, default timeouts (s)", f"{secs:.1f} (exit {code})"))
        target = "dying"
        repo = make_repo(work / target, target, target, n)
        log = work / "dying.jsonl"
        proc = subprocess.Popen([*AGENT, "apply", str(repo), "--kubeconfig", kc, "--audit-log", str(log)], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_results(proc, log, 30)
        os.kill(pid, signal.SIGKILL)
        died = time.monotonic()
        code = proc.wait()
        rows.append(("kube-apiserver SIGKILLed mid-apply: its death to the agent's exit (s)",
                     f"{time.monotonic() - died:.1f} (exit {code})"))
    finally:
        try:
            devcluster.down(work / "cluster")
        finally:
            shutil.rmtree(work, ignore_errors=True)
    print(f"\n| fault (N = {n} models) | result |\n|---|---|")
    for what, result in rows:
        print(f"| {what} | {result} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
