"""Only signed commits apply, on the real control plane: `agent run --verify-signatures FILE`
following a repo on the real Gitea, and `agent apply --revision` from a clone. A commit signed by
an allowed SSH key applies; an unsigned one and one signed by another key do not: the last good
state stays, and the refusal is in the status, an Event, the metric and the audit log. A merge
signed by the forge's key applies once that key is added to the file (no new commit needed)."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.cluster import Cluster
from devenv.cluster import ForgeInfo, forge_create_repo
from tests._signing import GIT, allowed_signers, commit, fingerprint, run, ssh_key
from tests.integration._forge_repos import branches, git
from tests.integration._repos import make_repo, model_path
from tests.integration.conftest import audit_records, wait_until

pytestmark = pytest.mark.integration

KUBECTL = str(Path(sys.executable).parent / "kubectl")
REFUSED = 'modelops_agent_commits_refused_total{reason="signature"}'


def isvc(kubeconfig: Path, namespace: str, name: str) -> dict[str, Any] | None:
    with Cluster.connect(str(kubeconfig)) as cluster:
        return cluster.get(cluster.kind("serving.kserve.io/v1beta1", "InferenceService"), name, namespace)


def set_replicas(work: Path, prefix: str, i: int, replicas: int) -> None:
    path = model_path(work, prefix, i)
    docs = list(yaml.safe_load_all(path.read_text()))
    docs[0]["spec"].pop("autoscaling", None)
    docs[0]["spec"]["replicas"] = replicas
    path.write_text(yaml.safe_dump_all(docs, sort_keys=False))


def min_replicas(kubeconfig: Path, namespace: str, name: str) -> Any:
    obj = isvc(kubeconfig, namespace, name)
    return None if obj is None else obj["spec"]["predictor"].get("minReplicas")


def events(kubeconfig: Path, reason: str) -> list[str]:
    out = subprocess.run([KUBECTL, "--kubeconfig", str(kubeconfig), "get", "events", "-n", "modelops-system", "-o",
                          "json"], check=True, capture_output=True, text=True, timeout=60).stdout
    return [e["message"] for e in json.loads(out)["items"] if e["reason"] == reason]


def http_get(port: int, path: str) -> tuple[int, str]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as response:
            return int(response.status), response.read().decode()
    except urllib.error.HTTPError as err:
        return int(err.code), err.read().decode()
    except OSError:
        return 0, ""


def metric(port: int, series: str) -> float:
    _code, text = http_get(port, "/metrics")
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(series + " "))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def agent(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "agent", *args], capture_output=True, text=True, timeout=180)


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    return {name: ssh_key(tmp_path / "keys", name) for name in ("alice", "mallory", "forge")}


def signed_repo(root: Path, target: str, prefix: str, alice: Path) -> tuple[Path, str]:
    """make_repo's two-model repo without canaries (nothing held back for a second pass: one
    apply settles it), its one commit signed by alice: (work tree, commit)."""
    work = make_repo(root, target, prefix, 2)
    for i in range(2):
        path = model_path(work, prefix, i)
        docs = list(yaml.safe_load_all(path.read_text()))
        docs[0]["spec"].pop("canary", None)
        path.write_text(yaml.safe_dump_all(docs, sort_keys=False))
    run([*GIT, "add", "-A"], cwd=work)
    run([*GIT, "-c", "gpg.format=ssh", "-c", f"user.signingkey={alice}", "commit", "-q", "--amend", "--no-edit", "-S"],
        cwd=work)
    return work, run(["git", "rev-parse", "HEAD"], cwd=work).strip()


@pytest.fixture
def controller(tmp_path: Path, gitea: ForgeInfo, kubeconfig: Path,
               keys: dict[str, tuple[Path, str]]) -> Iterator[dict[str, Any]]:
    """A Gitea repo whose first commit alice signed, and `agent run --verify-signatures FILE`
    following it (a subprocess, stopped at the end)."""
    name = f"signed-{uuid.uuid4().hex[:8]}"
    prefix = f"sig{uuid.uuid4().hex[:6]}"
    work, first = signed_repo(tmp_path / "work", name, prefix, keys["alice"][0])
    url = forge_create_repo(gitea, name)
    git(work, gitea, "remote", "add", "origin", url)
    git(work, gitea, "push", "-q", "origin", "main")
    wait_until(lambda: "main" in branches(gitea, name), "main on the forge", 20)
    signers = allowed_signers(tmp_path / "allowed_signers", f'alice@example.com namespaces="git" {keys["alice"][1]}')
    port = free_port()
    log_path = tmp_path / "agent.log"
    audit_log = tmp_path / "audit.jsonl"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--repo", url, "--interval", "1s", "--kubeconfig", str(kubeconfig),
             "--http-addr", f"127.0.0.1:{port}", "--audit-log", str(audit_log), "--git-token-file",
             str(gitea.token_file), "--git-ca-file", str(gitea.ca_file), "--verify-signatures", str(signers)],
            env={**os.environ, "AGENT_CACHE_DIR": str(tmp_path / "cache")}, stdout=log, stderr=subprocess.STDOUT,
            text=True)
    try:
        yield {"work": work, "first": first, "prefix": prefix, "port": port, "signers": signers, "audit": audit_log,
               "log": log_path, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def test_run_applies_only_commits_signed_by_an_allowed_key(controller: dict[str, Any], gitea: ForgeInfo,
                                                          kubeconfig: Path, keys: dict[str, tuple[Path, str]]) -> None:
    work, prefix, port, log = controller["work"], controller["prefix"], controller["port"], controller["log"]
    alice, mallory, forge = keys["alice"][0], keys["mallory"][0], keys["forge"][0]
    ns = f"{prefix}-0"
    wait_until(lambda: http_get(port, "/readyz")[0] == 200, "the first (signed) commit applied", 120)
    good = controller["first"]
    before = isvc(kubeconfig, ns, "model-0000")
    assert before is not None, log.read_text()
    assert metric(port, REFUSED) == 0

    def push(message: str, **sign: Any) -> str:
        sha = commit(work, message, **sign)
        git(work, gitea, "push", "-q", "origin", "main")
        return sha

    def marked(sha: str) -> bool:
        """The refusal's last trace: the inventory's mark `agent status` reads (the refused-commits
        metric counts first; the audit record and the Event are written before the mark)."""
        status = agent("status", str(work), "--revision", good, "--kubeconfig", str(kubeconfig), "-o", "json")
        return bool((json.loads(status.stdout).get("invalidCommit") or {}).get("commit") == sha)

    def unchanged() -> None:
        after = isvc(kubeconfig, ns, "model-0000")
        # nothing written (the generation counts spec writes; the simulated KServe status does not)
        assert after is not None and after["metadata"]["generation"] == before["metadata"]["generation"]
        assert after["spec"] == before["spec"]

    # 1. unsigned: refused; the last good commit stays
    set_replicas(work, prefix, 0, 4)
    unsigned = push("four replicas, unsigned")
    wait_until(lambda: metric(port, REFUSED) >= 1, "the unsigned commit refused")
    wait_until(lambda: marked(unsigned), "the unsigned commit's refusal recorded")
    unchanged()
    assert any(unsigned[:12] in m and "is not signed" in m for m in events(kubeconfig, "UnverifiedCommit"))
    record = audit_records(controller["audit"], "unverified-commit")[0]
    assert (record["commit"], record["signer"], record["kept"]) == (unsigned, "unsigned", good)
    assert record["errors"] == [f"commit {unsigned[:12]} is not signed"]
    status = agent("status", str(work), "--revision", good, "--kubeconfig", str(kubeconfig), "-o", "json")
    refused = json.loads(status.stdout)["invalidCommit"]
    assert (refused["commit"], refused["reason"], refused["signer"]) == (unsigned, "signature", "unsigned")
    text = agent("status", str(work), "--revision", good, "--kubeconfig", str(kubeconfig), "--allow-unknown")
    assert text.returncode == 1 and f"invalid commit {unsigned[:12]}" in text.stdout and "is not signed" in text.stdout

    # 2. signed by a key the file does not allow: refused, naming the key
    mallory_key = fingerprint(mallory.with_suffix(".pub"))
    other = push("four replicas, signed by mallory", ssh=mallory)
    wait_until(lambda: metric(port, REFUSED) >= 2, "mallory's commit refused")
    wait_until(lambda: marked(other), "mallory's commit's refusal recorded")
    unchanged()
    assert any(other[:12] in m and mallory_key in m for m in events(kubeconfig, "UnverifiedCommit"))
    records = [r for r in audit_records(controller["audit"], "unverified-commit") if r["commit"] == other]
    assert records and records[0]["signer"] == f"key {mallory_key}" and records[0]["kept"] == good

    # 3. a merge signed by the forge's key: refused until that key is added to the file, then
    # applied without a new commit (the file is re-read, the refused head verified again)
    run([*GIT, "checkout", "-q", "-b", "feature", good], cwd=work)
    set_replicas(work, prefix, 0, 4)
    commit(work, "four replicas", ssh=alice)
    run([*GIT, "checkout", "-q", "main"], cwd=work)
    run([*GIT, "-c", "gpg.format=ssh", "-c", f"user.signingkey={forge}", "merge", "-q", "--no-ff", "-S", "-m",
         "Merge pull request 'four replicas' (#1) from feature into main", "feature"], cwd=work)
    merge = run(["git", "rev-parse", "HEAD"], cwd=work).strip()
    git(work, gitea, "push", "-q", "origin", "main")
    wait_until(lambda: metric(port, REFUSED) >= 3, "the forge-signed merge refused")
    unchanged()
    allowed_signers(controller["signers"], f'alice@example.com namespaces="git" {keys["alice"][1]}',
                    f'forge@gitea.invalid namespaces="git" {keys["forge"][1]}')
    wait_until(lambda: min_replicas(kubeconfig, ns, "model-0000") == 4, "the merge applied once its key is allowed")
    applied = wait_until(lambda: [r for r in audit_records(controller["audit"], "reconcile") if r["commit"] == merge],
                         "the merge's audit record")  # written after the apply
    assert applied and applied[-1]["signer"] == f"forge@gitea.invalid (key {fingerprint(forge.with_suffix('.pub'))})"
    assert metric(port, REFUSED) == 3

    # 4. signed by alice: applies, and the status no longer reports a refused commit
    set_replicas(work, prefix, 1, 3)
    signed = push("three replicas for model-0001", ssh=alice)
    wait_until(lambda: min_replicas(kubeconfig, f"{prefix}-1", "model-0001") == 3, "the signed commit applied")
    applied = wait_until(lambda: [r for r in audit_records(controller["audit"], "reconcile") if r["commit"] == signed],
                         "the signed commit's audit record")  # written after the apply
    assert applied and applied[-1]["signer"].startswith("alice@example.com (key SHA256:")
    wait_until(lambda: json.loads(agent("status", str(work), "--revision", signed, "--kubeconfig", str(kubeconfig),
                                        "-o", "json").stdout)["invalidCommit"] is None, "the refusal cleared")
    assert f"only commits signed by a key of {controller['signers']}" in log.read_text()
    assert "Traceback" not in log.read_text()


def test_apply_revision_refuses_unsigned_and_unknown_keys(tmp_path: Path, kubeconfig: Path,
                                                         keys: dict[str, tuple[Path, str]]) -> None:
    prefix = f"sigap{uuid.uuid4().hex[:6]}"
    alice, mallory = keys["alice"][0], keys["mallory"][0]
    work, first = signed_repo(tmp_path / "work", f"sig-apply-{prefix}", prefix, alice)
    signers = allowed_signers(tmp_path / "allowed_signers", f"alice@example.com {keys['alice'][1]}")
    audit_log = tmp_path / "audit.jsonl"
    common = ["--kubeconfig", str(kubeconfig), "--verify-signatures", str(signers), "--audit-log", str(audit_log)]
    done = agent("apply", str(work), "--revision", first, *common)
    assert done.returncode == 0, done.stderr
    before = isvc(kubeconfig, f"{prefix}-0", "model-0000")
    assert before is not None
    assert audit_records(audit_log)[-1]["signer"].startswith("alice@example.com (key SHA256:")
    records = len(audit_records(audit_log))

    set_replicas(work, prefix, 0, 5)
    unsigned = commit(work, "five replicas, unsigned")
    refused = agent("apply", str(work), "--revision", unsigned, *common)
    assert refused.returncode == 2 and refused.stderr.strip() == f"error: commit {unsigned[:12]} is not signed"

    by_mallory = commit(work, "five replicas, signed by mallory", ssh=mallory)
    refused = agent("apply", str(work), "--revision", "HEAD", *common)
    key = fingerprint(mallory.with_suffix(".pub"))
    assert refused.returncode == 2
    assert refused.stderr.startswith(f"error: commit {by_mallory[:12]} is signed by key {key}, which is not allowed "
                                     f"by {signers} (an SSH allowed-signers file, 1 key(s))"), refused.stderr
    after = isvc(kubeconfig, f"{prefix}-0", "model-0000")
    assert after is not None and after["metadata"]["generation"] == before["metadata"]["generation"]
    assert len(audit_records(audit_log)) == records  # nothing applied, nothing recorded

    signed = commit(work, "five replicas, signed by alice", ssh=alice)
    done = agent("apply", str(work), "--revision", "main", *common)
    assert done.returncode == 0, done.stderr
    assert min_replicas(kubeconfig, f"{prefix}-0", "model-0000") == 5
    assert audit_records(audit_log)[-1]["commit"] == signed
