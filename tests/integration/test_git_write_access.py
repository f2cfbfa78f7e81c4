"""A rollout that writes its outcome to Git needs credentials that may push: `agent run` against
the real Gitea over HTTPS refuses at start (exit 2, saying what needs it and what to grant) with
a read-only token, starts with a token that may write, and refuses a later commit that brings
the first such rollout in (the last good commit stays) when its token may only read."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from devenv.cluster import ForgeInfo, forge_create_repo
from tests.integration._forge_repos import git, scoped_token
from tests.integration._repos import GIT
from tests.integration.conftest import audit_records, wait_until

API = "modelops.dev/v1alpha1"


def _docs(name: str, *, rollout: bool) -> dict[str, list[dict[str, Any]]]:
    spec: dict[str, Any] = {"format": "sklearn", "runtime": "sklearn-server", "backend": "kserve", "replicas": 1,
                            "versions": [{"version": "1", "uri": "s3://models/scorer/1/"},
                                         {"version": "2", "uri": "s3://models/scorer/2/"}],
                            "stable": "1"}
    if rollout:
        spec["canary"] = {"version": "2"}
        spec["rollout"] = {"strategy": "canary", "steps": [50, 100], "interval": "1m",
                           "analysis": {"rules": ["error-rate"]}}  # onSuccess: commit, the default
    return {
        "repo.yaml": [{"apiVersion": API, "kind": "RepositoryConfig", "metadata": {"name": name},
                       "spec": {"policy": {"allowedNamespaces": [name]}}}],
        "infra/namespace.yaml": [{"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}],
        "runtimes/sklearn.yaml": [{"apiVersion": API, "kind": "ServingRuntime", "metadata": {"name": "sklearn-server"},
                                   "spec": {"image": "registry.example/sklearn-server:1.5", "formats": ["sklearn"],
                                            "port": 8080}}],
        "models/scorer.yaml": [
            {"apiVersion": API, "kind": "Model", "metadata": {"name": "scorer", "namespace": name}, "spec": spec},
            {"apiVersion": API, "kind": "Monitor", "metadata": {"name": "scorer", "namespace": name},
             "spec": {"model": "scorer", "rules": [{"name": "error-rate", "type": "errorRate", "threshold": 0.05,
                                                     "action": "rollback"}]}},
        ],
    }


def _write(work: Path, name: str, *, rollout: bool) -> None:
    for rel, content in _docs(name, rollout=rollout).items():
        path = work / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump_all(content, sort_keys=False))


def hosted_repo(tmp_path: Path, gitea: ForgeInfo, *, rollout: bool) -> tuple[Path, str, str]:
    """A model repo on the forge: (working clone, HTTPS URL, target and namespace name)."""
    name = f"wa-{uuid.uuid4().hex[:8]}"
    work = tmp_path / "work"
    work.mkdir()
    _write(work, name, rollout=rollout)
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=work, check=True)
    subprocess.run([*GIT, "add", "-A"], cwd=work, check=True)
    subprocess.run([*GIT, "commit", "-qm", "first"], cwd=work, check=True)
    url = forge_create_repo(gitea, name)
    git(work, gitea, "remote", "add", "origin", url)
    git(work, gitea, "push", "-q", "origin", "main")
    return work, url, name


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def agent_run(tmp_path: Path, url: str, token_file: Path, gitea: ForgeInfo, kubeconfig: Path
              ) -> Iterator[tuple[subprocess.Popen[str], int, Path]]:
    """`agent run` following `url` with the token in `token_file` (a subprocess; stopped at the end)."""
    port = _free_port()
    log_path = tmp_path / f"agent-{uuid.uuid4().hex[:6]}.log"
    with open(log_path, "w") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "agent", "run", "--repo", url, "--interval", "1s", "--kubeconfig", str(kubeconfig),
             "--http-addr", f"127.0.0.1:{port}", "--audit-log", str(tmp_path / "audit.jsonl"),
             "--git-token-file", str(token_file), "--git-ca-file", str(gitea.ca_file)],
            env={**os.environ, "AGENT_CACHE_DIR": str(tmp_path / "cache")}, stdout=log, stderr=subprocess.STDOUT,
            text=True)
    try:
        yield proc, port, log_path
    finally:
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def test_a_read_only_token_is_refused_at_start(tmp_path: Path, gitea: ForgeInfo, kubeconfig: Path) -> None:
    _work, url, _name = hosted_repo(tmp_path, gitea, rollout=True)
    token_file = scoped_token(gitea, ["read:repository"], tmp_path / "read-only-token")
    token = token_file.read_text().strip()
    started = time.monotonic()
    with agent_run(tmp_path, url, token_file, gitea, kubeconfig) as (proc, _port, log_path):
        code = proc.wait(timeout=90)
    took = time.monotonic() - started
    out = log_path.read_text()
    assert code == 2, out
    assert took < 60, took
    error = [line for line in out.splitlines() if line.startswith("error:")]
    assert len(error) == 1, out
    assert "the rollout of " in error[0] and "/scorer (onSuccess: commit pushes to the followed branch)" in error[0]
    assert f"needs write access to branch main of {url}" in error[0]
    assert "403" in error[0] and "write:repository" in error[0]
    assert token not in out and "Traceback" not in out
    assert not (tmp_path / "audit.jsonl").exists() or "reconcile" not in (tmp_path / "audit.jsonl").read_text()


def test_a_token_that_may_write_starts(tmp_path: Path, gitea: ForgeInfo, kubeconfig: Path) -> None:
    work, url, _name = hosted_repo(tmp_path, gitea, rollout=True)
    token_file = scoped_token(gitea, ["write:repository"], tmp_path / "write-token")
    with agent_run(tmp_path, url, token_file, gitea, kubeconfig) as (proc, port, log_path):
        wait_until(lambda: _ready(port) or proc.poll() is not None, "the controller ready", 90)
        assert proc.poll() is None, log_path.read_text()
        assert "the credentials may push to branch main" in log_path.read_text()
        # `agent status` names the commit the controller follows, from where, and when it synced
        status = subprocess.run([sys.executable, "-m", "agent", "status", str(work), "--revision", "HEAD",
                                 "--kubeconfig", str(kubeconfig), "-o", "json"], capture_output=True, text=True,
                                timeout=60)
        mark = json.loads(status.stdout)["lastSync"]
        head = git(work, gitea, "rev-parse", "HEAD").strip()
        assert (mark["commit"], mark["by"], mark["source"]) == (head, "controller", f"{url}@main"), mark
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0


def test_a_later_commit_needing_write_access_is_refused(tmp_path: Path, gitea: ForgeInfo, kubeconfig: Path) -> None:
    work, url, name = hosted_repo(tmp_path, gitea, rollout=False)
    token_file = scoped_token(gitea, ["read:repository"], tmp_path / "read-only-token")
    with agent_run(tmp_path, url, token_file, gitea, kubeconfig) as (proc, port, log_path):
        wait_until(lambda: _ready(port) or proc.poll() is not None, "the controller ready", 90)
        assert proc.poll() is None, log_path.read_text()  # nothing writes to Git yet: read access is enough
        _write(work, name, rollout=True)
        subprocess.run([*GIT, "commit", "-qam", "scorer 2 under a rollout"], cwd=work, check=True)
        new = git(work, gitea, "rev-parse", "HEAD").strip()
        git(work, gitea, "push", "-q", "origin", "main")
        audit = tmp_path / "audit.jsonl"

        record = wait_until(lambda: [r for r in audit_records(audit, "invalid-commit") if r["commit"] == new],
                            "the commit refused", 60)[0]
        assert "needs write access to branch main" in record["errors"][0]
        assert proc.poll() is None  # still running: the last good commit stays in force

        def marked() -> tuple[subprocess.CompletedProcess[str], dict[str, Any]] | None:
            """`agent status` once it shows a refused commit (the inventory's mark of it is
            written after the audit record)."""
            done = subprocess.run([sys.executable, "-m", "agent", "status", str(work), "--kubeconfig", str(kubeconfig),
                                   "--revision", "HEAD~1", "-o", "json"], capture_output=True, text=True, timeout=60)
            doc = json.loads(done.stdout)
            return (done, doc) if doc["invalidCommit"] else None

        done, doc = wait_until(marked, "the refusal marked on the inventory", 30)
        assert doc["invalidCommit"]["commit"] == new and done.returncode == 1
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
