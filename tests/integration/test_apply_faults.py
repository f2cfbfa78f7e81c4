"""Issue #7 on the real control plane: the apply path under faults.

A killed agent leaves no object prune cannot find; a recovery run and the no-op after it make
no dry-run requests; two appliers on one target take turns through the target's Lease and keep
one audit chain; an object of another target is refused unless adopted; a Secret changed
through stringData is drift; an API server that is paused or killed ends the agent promptly
with exit 2 (these two run on a cluster of their own, since they break it).
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from agent.cluster import Cluster, Inventory, lease_name, load_inventory, well_known
from agent.engine import load_desired, selector
from agent.render import object_key
from devenv import cluster as dc
from tests.integration._repos import commit, make_repo, model_path

pytestmark = pytest.mark.integration

KUBECTL = str(Path(sys.executable).parent / "kubectl")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The agent's environment: render cache in the test's temp dir, never ~/.cache."""
    return {**os.environ, "AGENT_CACHE_DIR": str(tmp_path / "cache")}


def agent(env: dict[str, str], *args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=timeout, env=env)


def ok(proc: subprocess.CompletedProcess[str], code: int = 0) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == code, f"exit {proc.returncode}\nstdout:\n{proc.stdout[-3000:]}\nstderr:\n{proc.stderr[-3000:]}"
    return proc


def labelled(kubeconfig: Path, repo: Path, target: str) -> dict[tuple[str, str, str, str], dict[str, Any]]:
    """Every object in the cluster carrying the target's ownership label."""
    desired = load_desired(repo, cached=False)
    kinds = {(o["apiVersion"], o["kind"]) for o in desired.objects}
    out = {}
    with Cluster.connect(str(kubeconfig)) as cluster:
        for api_version, kind in sorted(kinds):
            for obj in cluster.list(cluster.kind(api_version, kind), selector(target)):
                out[object_key(obj)] = obj
    return out


def inventory(kubeconfig: Path, target: str) -> Inventory:
    with Cluster.connect(str(kubeconfig)) as cluster:
        return load_inventory(cluster, target)


def records(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


# --- 3 and 5: a SIGKILL mid-apply ------------------------------------------------------------

def test_agent_killed_mid_apply_leaves_no_orphans(tmp_path: Path, kubeconfig: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", "crash", "crash", 300)
    log = tmp_path / "audit.jsonl"
    args = ["apply", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig), "--audit-log", str(log)]
    proc = subprocess.Popen([sys.executable, "-m", "agent", *args], env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and sum(1 for r in records(log) if r["event"] == "object") >= 40:
                break
            time.sleep(0.05)
        assert proc.poll() is None, "the apply finished before it could be killed: make the repo bigger"
        proc.send_signal(signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)

    written = labelled(kubeconfig, repo, "crash")
    total = len(load_desired(repo, cached=False).objects)
    assert 0 < len(written) < total, f"{len(written)} of {total} written: the kill did not land mid-apply"
    inv = inventory(kubeconfig, "crash")
    orphans = sorted(set(written) - set(inv.entries))
    print(f"\nkilled mid-apply: {len(written)} of {total} objects written, orphans (labelled, not in inventory): {len(orphans)}")
    assert orphans == []
    # every write was audited before it was sent (intent), and the log verifies
    intents = {(r["object"]["kind"], r["object"]["namespace"], r["object"]["name"]) for r in records(log) if r["event"] == "intent"}
    missing = [k for k in written if (k[1], k[2], k[3]) not in intents]
    assert missing == [], f"objects written without an intent record: {missing[:5]}"
    ok(agent(env, "audit", "verify", str(log)))

    ok(agent(env, *args))  # recovery
    noop = json.loads(ok(agent(env, *args, "-o", "json")).stdout)
    print(f"no-op after crash and recovery: requests {noop['requests']}")
    assert "PATCH (dry-run)" not in noop["requests"], noop["requests"]
    assert not set(noop["requests"]) - {"GET"}, noop["requests"]

    # three models leave the repo: their objects, some written by the killed run, are pruned
    gone = []
    for i in (0, 1, 2):
        path = model_path(repo, "crash", i)
        gone.append(path.stem)
        path.unlink()
    commit(repo, "remove three models")
    out = ok(agent(env, *args, "--prune"))
    left = labelled(kubeconfig, repo, "crash")
    assert not [k for k in left if any(k[3].startswith(m) for m in gone)], out.stdout[-2000:]
    assert set(left) <= set(inventory(kubeconfig, "crash").entries)
    ok(agent(env, "audit", "verify", str(log), "--target", "crash", "--kubeconfig", str(kubeconfig)))


# --- 4: two appliers ---------------------------------------------------------------------------

def test_two_appliers_take_turns_and_keep_one_audit_chain(tmp_path: Path, kubeconfig: Path, env: dict[str, str]) -> None:
    repo = make_repo(tmp_path / "repo", "race", "race", 200)
    log = tmp_path / "audit.jsonl"
    args = ["apply", str(repo), "--revision", "HEAD", "--kubeconfig", str(kubeconfig), "--audit-log", str(log)]
    first = subprocess.Popen([sys.executable, "-m", "agent", *args], env=env, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True)
    lease_kind = well_known("coordination.k8s.io/v1", "Lease")
    assert lease_kind is not None
    try:
        holder = ""
        with Cluster.connect(str(kubeconfig)) as cluster:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline and first.poll() is None and not holder:
                lease = cluster.get(lease_kind, lease_name("race"), "modelops-system")
                holder = ((lease or {}).get("spec") or {}).get("holderIdentity") or ""
                time.sleep(0.02)
        assert holder.endswith(f"/{first.pid}"), f"first applier never held the Lease (holder {holder!r})"
        second = agent(env, *args)
        ok(second, 2)
        assert f"locked by {holder}" in second.stderr, second.stderr
        _out, err = first.communicate(timeout=300)
        assert first.returncode == 0, err[-3000:]
    finally:
        if first.poll() is None:
            first.kill()
            first.communicate()
    ok(agent(env, *args))  # the Lease was released: the next apply runs (a no-op)
    ok(agent(env, "audit", "verify", str(log), "--target", "race", "--kubeconfig", str(kubeconfig)))
    closing = [r for r in records(log) if r["event"] == "reconcile"]
    assert {r["result"] for r in closing} == {"succeeded"}
    # the winner (its passes: a staged canary's second pass included) and the no-op after it:
    # the loser wrote nothing at all
    assert len({r["agent"] for r in records(log)}) == 2


# --- 1: another target's objects ----------------------------------------------------------------

def test_object_of_another_target_is_refused_unless_adopted(tmp_path: Path, kubeconfig: Path, env: dict[str, str]) -> None:
    first = make_repo(tmp_path / "a", "owner-a", "owned", 1)
    ok(agent(env, "apply", str(first), "--kubeconfig", str(kubeconfig)))
    # a second repo (or a subdirectory run as its own target) renders the same Namespaces
    second = make_repo(tmp_path / "b", "owner-b", "owned", 0)
    with Cluster.connect(str(kubeconfig)) as cluster:
        ns_kind = cluster.kind("v1", "Namespace")
        before = cluster.get(ns_kind, "owned-0")
    assert before is not None

    diff = ok(agent(env, "diff", str(second), "--kubeconfig", str(kubeconfig)), 1)
    assert "Namespace/owned-0 carries the ownership label of target 'owner-a'" in diff.stderr
    for extra in ([], ["--dry-run"]):
        refused = ok(agent(env, "apply", str(second), "--kubeconfig", str(kubeconfig), *extra), 2)
        assert "refusing to take over 3 object(s) of another target" in refused.stderr
        assert "Namespace/owned-0 belongs to target 'owner-a'" in refused.stderr
    with Cluster.connect(str(kubeconfig)) as cluster:
        after = cluster.get(ns_kind, "owned-0")
    assert after is not None
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
    assert after["metadata"]["labels"]["modelops.dev/target"] == "owner-a"
    assert inventory(kubeconfig, "owner-b").entries == {}

    # the first target applied without an audit log: verify --target says there is no anchor
    empty = tmp_path / "none.jsonl"
    empty.write_text("")
    unanchored = ok(agent(env, "audit", "verify", str(empty), "--target", "owner-a", "--kubeconfig", str(kubeconfig)), 1)
    assert "no audit anchor" in unanchored.stdout

    # a dry run counts what it lists
    (first / "infra" / "extra.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: extra, namespace: owned-0}\ndata: {a: b}\n")
    dry = ok(agent(env, "apply", str(first), "--kubeconfig", str(kubeconfig), "--dry-run"))
    assert "would apply 1 object change(s)" in dry.stdout, dry.stdout

    ok(agent(env, "apply", str(second), "--kubeconfig", str(kubeconfig), "--adopt"))
    with Cluster.connect(str(kubeconfig)) as cluster:
        taken = cluster.get(ns_kind, "owned-0")
    assert taken is not None and taken["metadata"]["labels"]["modelops.dev/target"] == "owner-b"


# --- 8: stringData drift -----------------------------------------------------------------------

def test_secret_changed_through_string_data_is_drift(tmp_path: Path, kubeconfig: Path, env: dict[str, str]) -> None:
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "db", "namespace": "sdata-0"},
              "type": "Opaque", "stringData": {"PASSWORD": "from-git"}}
    repo = make_repo(tmp_path / "repo", "sdata", "sdata", 1, secret=secret)
    ok(agent(env, "apply", str(repo), "--kubeconfig", str(kubeconfig)))
    ok(agent(env, "diff", str(repo), "--kubeconfig", str(kubeconfig)), 0)
    subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "-n", "sdata-0", "patch", "secret", "db",
                    "-p", '{"stringData":{"PASSWORD":"changed"}}'], check=True, capture_output=True, timeout=60)
    diff = ok(agent(env, "diff", str(repo), "--kubeconfig", str(kubeconfig)), 1)
    assert "Secret/sdata-0/db" in diff.stdout
    for value in ("from-git", "Y2hhbmdlZA==", "ZnJvbS1naXQ=", "PASSWORD: changed"):  # values never shown
        assert value not in diff.stdout
    ok(agent(env, "apply", str(repo), "--kubeconfig", str(kubeconfig)))
    out = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "-n", "sdata-0", "get", "secret", "db",
                          "-o", "jsonpath={.data.PASSWORD}"], check=True, capture_output=True, text=True, timeout=60)

    assert base64.b64decode(out.stdout).decode() == "from-git"  # healed
    ok(agent(env, "diff", str(repo), "--kubeconfig", str(kubeconfig)), 0)


# --- 2 and 6: a paused, then a killed API server (a cluster of their own) -------------------------

@pytest.fixture(scope="module")
def doomed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, int]]:
    """A second cluster that the tests may pause and kill: (kubeconfig, kube-apiserver pid)."""
    directory = tmp_path_factory.mktemp("doomed")
    info = dc.up(directory)
    state = json.loads((directory / "state.json").read_text())
    pid = next(p["pid"] for p in state["processes"] if p["name"] == "kube-apiserver")
    try:
        yield info.kubeconfig, int(pid)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(pid), signal.SIGCONT)
        dc.down(directory)


def test_paused_api_server_is_a_clean_timeout(tmp_path: Path, doomed: tuple[Path, int], env: dict[str, str]) -> None:
    kubeconfig, pid = doomed
    repo = make_repo(tmp_path / "repo", "paused", "paused", 2)
    os.kill(pid, signal.SIGSTOP)
    try:
        quick = ["--kubeconfig", str(kubeconfig), "--request-timeout", "2", "--connect-timeout", "2", "--retry-budget", "4"]
        for command in (["diff", str(repo)], ["apply", str(repo)], ["status", str(repo)]):
            proc = ok(agent(env, *command, *quick, timeout=120), 2)
            assert "API server at https://127.0.0.1:" in proc.stderr, proc.stderr
            assert "Traceback" not in proc.stderr
    finally:
        os.kill(pid, signal.SIGCONT)


def test_killed_api_server_ends_the_apply_promptly(tmp_path: Path, doomed: tuple[Path, int], env: dict[str, str]) -> None:
    kubeconfig, pid = doomed
    repo = make_repo(tmp_path / "repo", "dying", "dying", 300)
    log = tmp_path / "audit.jsonl"
    proc = subprocess.Popen([sys.executable, "-m", "agent", "apply", str(repo), "--kubeconfig", str(kubeconfig),
                             "--audit-log", str(log)], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if log.exists() and sum(1 for r in records(log) if r["event"] == "object") >= 30:
                break
            time.sleep(0.02)
        assert proc.poll() is None, "the apply finished before the API server could be killed"
        os.kill(pid, signal.SIGKILL)
        died = time.monotonic()
        out, err = proc.communicate(timeout=600)
        took = time.monotonic() - died
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    print(f"\nAPI server killed mid-apply: the agent exited {proc.returncode} {took:.1f} s later")
    assert proc.returncode == 2, out[-2000:] + err[-2000:]
    assert "giving up on the API server at https://127.0.0.1:" in out + err
    closing = [r for r in records(log) if r["event"] == "reconcile"]
    assert closing and closing[-1]["result"] == "failed"
    ok(agent(env, "audit", "verify", str(log)))
    shutil.rmtree(tmp_path / "repo", ignore_errors=True)
