"""Reconcile benchmark against the local control plane, with kubectl as the peer.

For each N it generates the synthetic repo of bench/offline.py (N models, both backends,
canaries, monitors, raw manifests) as a git repo, then on a fresh local cluster measures the
agent CLI (one process per step, as a user runs it):

  initial apply    `agent apply` of revision A on an empty cluster
  no-op diff       `agent diff` against the cluster that already matches A
  no-op apply      `agent apply` again: must make no writes
  one-model change `agent apply` of revision B, which changes one model's canary traffic

and the same manifests (`agent render -o yaml`) through kubectl on a second fresh cluster:
`kubectl apply --server-side` (initial), `kubectl diff --server-side` (no-op),
`kubectl apply --server-side` (no-op), and `kubectl apply --server-side --force-conflicts` of B.
The agent starts with an empty per-tree render cache, so the initial apply and the one-model
change load and render their commit from scratch, and the no-op steps reuse what the initial
apply rendered (as a controller or a CI job that already saw the commit would).
Wall time, API requests by verb (the agent's own counter), and the peak RSS of the process
(from wait4, in a small launcher so the bench's own memory is not counted) are printed as a table with kubectl/agent ratios.

Run:  .venv/bin/python bench/reconcile.py [N ...]     (default: 100 1000)
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent))
from offline import GIT, generate

from devenv import cluster as devcluster

BIN = Path(sys.executable).parent
AGENT = [sys.executable, "-m", "agent"]
KUBECTL = str(BIN / "kubectl")


# The peak RSS of the command alone. Linux counts the memory of the process a command is
# spawned from into the command's ru_maxrss (up to its exec; vfork shares the parent's memory),
# so spawned from this bench (~90 MiB) every figure would be at least the bench's own size. A
# small launcher (python -I -S, ~9 MiB) forks the command and reports its wall time and
# wait4 peak RSS in KiB.
_LAUNCHER = """import os, sys, time
start = time.perf_counter()
pid = os.fork()
if pid == 0:
    os.execvp(sys.argv[2], sys.argv[2:])
_, status, usage = os.wait4(pid, 0)
with open(sys.argv[1], "w") as fh:
    fh.write(f"{time.perf_counter() - start} {usage.ru_maxrss}")
sys.exit(os.waitstatus_to_exitcode(status))
"""


def run(cmd: list[str], ok: tuple[int, ...] = (0,), env: dict[str, str] | None = None) -> tuple[float, int, str]:
    """(wall seconds, peak RSS MiB, stdout) of one process."""
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err, \
            tempfile.NamedTemporaryFile("r") as measured:
        proc = subprocess.run([sys.executable, "-I", "-S", "-c", _LAUNCHER, measured.name, *cmd], stdout=out,
                              stderr=err, env={**os.environ, **(env or {})}, check=False)
        wall_text, rss_kib = measured.read().split()
        out.seek(0)
        err.seek(0)
        stdout, stderr = out.read().decode(), err.read().decode()
    if proc.returncode not in ok:
        failed = [line for line in stdout.splitlines() if line.lstrip().startswith(("failed", '"outcome": "failed"'))]
        raise RuntimeError(f"{cmd[:4]} exited {proc.returncode}: {stderr[-2000:]} {failed[:5]}")
    return float(wall_text), int(rss_kib) // 1024, stdout


def one_model_change(repo: Path) -> str:
    """Commit B: raise the canary traffic of the first model that has a canary."""
    for path in sorted((repo / "models").rglob("*.yaml")):
        docs = list(yaml.safe_load_all(path.read_text()))
        spec = docs[0]["spec"]
        if "canary" in spec:
            spec["canary"]["traffic"] = min(100, spec["canary"]["traffic"] + 5)
            path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
            subprocess.run([*GIT, "commit", "-qam", f"canary of {docs[0]['metadata']['name']}"], cwd=repo, check=True)
            return str(docs[0]["metadata"]["name"])
    raise RuntimeError("no model with a canary")


def agent_step(args: list[str], cache: Path) -> dict[str, Any]:
    wall, rss, out = run([*AGENT, *args, "-o", "json"], ok=(0, 1), env={"AGENT_CACHE_DIR": str(cache)})
    doc = json.loads(out)
    requests = doc.get("requests", {})
    changed = [r for r in doc.get("results", []) if r["outcome"] in ("applied", "deleted")]
    return {"wall": wall, "rss": rss, "requests": requests, "changed": changed}


def bench(n: int, work: Path) -> list[dict[str, Any]]:
    repo = work / f"repo-{n}"
    counts = generate(repo, n)
    rev_a = subprocess.run(["git", "rev-parse", "HEAD"], cwd=repo, check=True, capture_output=True, text=True).stdout.strip()
    changed_model = one_model_change(repo)
    manifests = {}
    for rev in (rev_a, "HEAD"):
        _, _, text = run([*AGENT, "render", str(repo), "--revision", rev, "--show-secrets"],
                         env={"AGENT_CACHE_DIR": str(work / f"render-cache-{n}")})
        path = work / f"manifests-{n}-{'a' if rev == rev_a else 'b'}.yaml"
        path.write_text(text)
        manifests[rev] = path
    objects = sum(1 for d in yaml.safe_load_all(manifests[rev_a].read_text()) if d)
    rows: list[dict[str, Any]] = []

    ours = work / f"agent-{n}"
    info = devcluster.up(ours)
    kc = ["--kubeconfig", str(info.kubeconfig)]
    try:
        steps = [
            ("initial apply", ["apply", str(repo), "--revision", rev_a, *kc, "--no-events"]),
            ("no-op diff", ["diff", str(repo), "--revision", rev_a, *kc]),
            ("no-op apply", ["apply", str(repo), "--revision", rev_a, *kc, "--no-events"]),
            ("one-model change", ["apply", str(repo), "--revision", "HEAD", *kc, "--no-events"]),
        ]
        # a fresh per-tree render cache: the initial apply (and the change) load their commit
        # cold; the no-op steps find what the initial apply rendered, as in real use
        cache = work / f"agent-cache-{n}"
        for name, args in steps:
            result = agent_step(args, cache)
            if name == "no-op diff":
                result["requests"] = {}  # diff -o json has no counter; measured via apply below
            rows.append({"n": n, "objects": objects, "step": name, **result})
    finally:
        devcluster.down(ours)

    peer = work / f"kubectl-{n}"
    info = devcluster.up(peer)
    kk = ["--kubeconfig", str(info.kubeconfig)]
    try:
        a, b = str(manifests[rev_a]), str(manifests["HEAD"])
        peer_steps = [
            ("initial apply", [KUBECTL, *kk, "apply", "--server-side", "-f", a], (0,)),
            ("no-op diff", [KUBECTL, *kk, "diff", "--server-side", "-f", a], (0, 1)),
            ("no-op apply", [KUBECTL, *kk, "apply", "--server-side", "-f", a], (0,)),
            ("one-model change", [KUBECTL, *kk, "apply", "--server-side", "--force-conflicts", "-f", b], (0,)),
        ]
        for name, cmd, ok in peer_steps:
            wall, rss, _ = run(cmd, ok)
            row = next(r for r in rows if r["step"] == name)
            row["kubectl_wall"], row["kubectl_rss"] = wall, rss
    finally:
        devcluster.down(peer)
    for row in rows:
        row["changed_model"] = changed_model
        row["files"] = counts["files"]
    shutil.rmtree(repo, ignore_errors=True)
    return rows


def table(rows: list[dict[str, Any]]) -> str:
    head = ("| N | objects | step | agent s | kubectl s | kubectl/agent | agent requests by verb | writes "
            "| agent peak RSS MiB | kubectl peak RSS MiB |")
    lines = [head, "|" + "---|" * 10]
    for r in rows:
        req = r["requests"]
        writes = sum(v for k, v in req.items() if k in ("POST", "PUT", "PATCH", "DELETE"))
        verbs = ", ".join(f"{k} {v}" for k, v in sorted(req.items())) or "-"
        lines.append(f"| {r['n']} | {r['objects']} | {r['step']} | {r['wall']:.2f} | {r['kubectl_wall']:.2f} | "
                     f"{r['kubectl_wall'] / r['wall']:.1f}x | {verbs} | {writes if req else '-'} | {r['rss']} | "
                     f"{r['kubectl_rss']} |")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[100, 1000])
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-reconcile-") as tmp:
        for n in args.sizes:
            rows.extend(bench(n, Path(tmp)))
            print(table([r for r in rows if r["n"] == n]), flush=True)
    print()
    print(table(rows))
    for r in rows:
        if r["step"] == "one-model change":
            refs = sorted({c["ref"] for c in r["changed"]})
            print(f"N={r['n']}: one-model change ({r['changed_model']}) wrote: {', '.join(refs)}")
        if r["step"] == "no-op apply":
            print(f"N={r['n']}: no-op apply requests {r['requests']} (writes must be 0)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
