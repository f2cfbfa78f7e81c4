"""The example repo's SOPS/age-encrypted Secret on the real control plane: `agent apply` puts the
decrypted values in the live Secret; `agent diff` and `agent render` never print them, in any
encoding; without the key (or with another one) the command fails naming the file and nothing
is applied. The repo is examples/model-repo under a target and namespaces of its own, its
Secret re-encrypted by the real sops after the rename (the MAC covers the namespace). And the
controller: a commit it cannot decrypt is refused like an invalid one, and the key file is read
again for the next commit."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client

from agent.controller import Controller, RunConfig
from tests._sops_tools import SopsTools
from tests.conftest import DEMO_AGE_KEY
from tests.integration._repos import EXAMPLE, commit, make_repo, renamed_example
from tests.integration.conftest import audit_records

pytestmark = pytest.mark.integration

SECRET_FILE = "teams/fraud/infra/s3-model-artifacts.enc.yaml"
OLD = {"AWS_ACCESS_KEY_ID": b"example-access-key-id", "AWS_SECRET_ACCESS_KEY": b"example-secret-access-key-not-real"}
ROTATED = b"rotated-secret-access-key-7f3a9c"
GIT = ["git", "-c", "user.name=Tester", "-c", "user.email=tester@modelops.invalid", "-c", "commit.gpgsign=false"]


@dataclass
class Repo:
    path: Path
    target: str
    fraud: str
    kubeconfig: Path
    sops: SopsTools
    home: Path  # an empty XDG_CONFIG_HOME: no sops default key file

    def agent(self, *args: str, key: str | None = DEMO_AGE_KEY) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("SOPS_")}
        env["XDG_CONFIG_HOME"] = str(self.home)
        flags = ["--sops-age-key-file", key] if key else []
        return subprocess.run([sys.executable, "-m", "agent", *args, str(self.path), "--revision", "HEAD", *flags],
                              capture_output=True, text=True, timeout=300, env=env)

    def cluster(self, *args: str, key: str | None = DEMO_AGE_KEY) -> subprocess.CompletedProcess[str]:
        return self.agent(*args, "--kubeconfig", str(self.kubeconfig), key=key)

    def reencrypt(self, rel: str, text: str) -> None:
        """Write `text` decrypted, then encrypt it in place with sops and the repo's .sops.yaml."""
        (self.path / rel).write_text(text, encoding="utf-8")
        self.sops.encrypt_in_place(self.path, rel)


def forms(*values: bytes) -> list[str]:
    """Each value as it could leak: as is and base64-encoded (with and without padding)."""
    out = []
    for v in values:
        encoded = base64.b64encode(v).decode()
        out += [v.decode(), encoded, encoded.rstrip("=")]
    return out


def live_secret(api_client: client.ApiClient, namespace: str, name: str = "s3-model-artifacts") -> dict[str, bytes] | None:
    try:
        secret = client.CoreV1Api(api_client).read_namespaced_secret(name, namespace)
    except client.ApiException as exc:
        if exc.status == 404:
            return None
        raise
    return {k: base64.b64decode(v) for k, v in (secret.data or {}).items()}


@pytest.fixture(scope="module")
def repo(sops_tools: SopsTools, kubeconfig: Path, api_client: client.ApiClient,
         tmp_path_factory: pytest.TempPathFactory) -> Iterator[Repo]:
    target = f"sops-{uuid.uuid4().hex[:6]}"
    renamed = {"fraud": f"{target}-fraud", "recsys": f"{target}-recsys"}
    work = tmp_path_factory.mktemp("sops-apply")
    path = renamed_example(work / "model-repo", target, renamed)  # its SOPS file left out: re-encrypted below
    home = work / "config"
    home.mkdir()
    r = Repo(path, target, renamed["fraud"], kubeconfig, sops_tools, home)
    plain = sops_tools.decrypt((EXAMPLE / SECRET_FILE).read_bytes(), Path(DEMO_AGE_KEY), work).decode()
    assert "namespace: fraud\n" in plain
    r.reencrypt(SECRET_FILE, plain.replace("namespace: fraud\n", f"namespace: {r.fraud}\n", 1))
    subprocess.run([*GIT, "init", "-q", "-b", "main"], cwd=path, check=True)
    commit(path, "the example repo, renamed")
    try:
        yield r
    finally:
        core = client.CoreV1Api(api_client)
        for ns in renamed.values():
            try:
                core.delete_namespace(ns)
            except client.ApiException as exc:
                if exc.status != 404:
                    raise


def test_apply_puts_the_decrypted_values_in_the_live_secret(repo: Repo, api_client: client.ApiClient) -> None:
    assert b"example-access-key" not in (repo.path / SECRET_FILE).read_bytes()  # ciphertext in Git
    out = repo.cluster("apply", "--color", "never")
    assert out.returncode == 0, f"stdout:\n{out.stdout}\nstderr:\n{out.stderr}"
    assert live_secret(api_client, repo.fraud) == OLD
    assert not any(f in out.stdout + out.stderr for f in forms(*OLD.values()))
    again = repo.cluster("diff", "--color", "never")  # applied as decrypted: nothing left to change
    assert again.returncode == 0, f"stdout:\n{again.stdout}\nstderr:\n{again.stderr}"


def test_diff_and_render_never_print_the_values(repo: Repo, api_client: client.ApiClient) -> None:
    if live_secret(api_client, repo.fraud) != OLD:
        pytest.skip("needs the first test's apply")
    plain = repo.sops.decrypt((repo.path / SECRET_FILE).read_bytes(), Path(DEMO_AGE_KEY), repo.path.parent).decode()
    old = base64.b64encode(OLD["AWS_SECRET_ACCESS_KEY"]).decode()
    repo.reencrypt(SECRET_FILE, plain.replace(old, base64.b64encode(ROTATED).decode()))
    commit(repo.path, "rotate the S3 secret key")
    secrets = forms(ROTATED, *OLD.values())
    for output in ("text", "json", "markdown"):
        diff = repo.cluster("diff", "-o", output, "--color", "never")
        assert diff.returncode == 1, f"{output}: exit {diff.returncode}\n{diff.stdout}\n{diff.stderr}"
        assert "s3-model-artifacts" in diff.stdout, output
        assert not any(f in diff.stdout + diff.stderr for f in secrets), output
    for output in ("yaml", "json"):
        render = repo.agent("render", "-o", output)
        assert render.returncode == 0, render.stderr
        assert "s3-model-artifacts" in render.stdout and "<redacted sha256:" in render.stdout
        assert not any(f in render.stdout + render.stderr for f in secrets), output
    assert live_secret(api_client, repo.fraud) == OLD  # diff and render change nothing


def test_a_missing_or_wrong_key_is_a_clear_error_and_applies_nothing(
        repo: Repo, api_client: client.ApiClient, tmp_path: Path) -> None:
    before = live_secret(api_client, repo.fraud)
    assert before is not None
    # a second encrypted Secret, for another team's key, and a readable change in the same commit
    other_key = tmp_path / "other.agekey"
    other = repo.sops.keygen(other_key)
    rel = "teams/fraud/infra/other-team.enc.yaml"
    (repo.path / rel).write_text(f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: other-team\n  namespace: {repo.fraud}\n"
                                 "stringData:\n  token: other-team-token-value\n", encoding="utf-8")
    subprocess.run([str(repo.sops.bin / "sops"), "--encrypt", "--in-place", "--age", other, rel], check=True,
                   capture_output=True, timeout=60, cwd=repo.path, env=repo.sops.env(tmp_path))
    store = repo.path / "teams/fraud/infra/feature-store.yaml"
    store.write_text(store.read_text(encoding="utf-8").replace("fraud_detection", "fraud_detection_v2"), encoding="utf-8")
    commit(repo.path, "another team's secret, and a feature-store change")

    missing = repo.cluster("apply", key=None)
    assert missing.returncode == 2, f"stdout:\n{missing.stdout}\nstderr:\n{missing.stderr}"
    for name in (SECRET_FILE, rel):
        assert f"{name}:1: (document): encrypted with SOPS for age recipient " in missing.stderr
    assert "no age identity given (--sops-age-key-file FILE, or SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)" in missing.stderr

    wrong = repo.cluster("apply", key=str(other_key))  # opens the other team's file, not the example's
    assert wrong.returncode == 2, wrong.stderr
    assert f"{SECRET_FILE}:1: (document): encrypted with SOPS for age recipient age1" in wrong.stderr
    assert f"no matching identity in --sops-age-key-file ({other_key})" in wrong.stderr

    demo_only = repo.cluster("apply")  # the example's key does not open the other team's file
    assert demo_only.returncode == 2, demo_only.stderr
    assert (f"{rel}:1: (document): encrypted with SOPS for age recipient {other}; no matching identity in "
            f"--sops-age-key-file ({DEMO_AGE_KEY})") in demo_only.stderr

    for out in (missing, wrong, demo_only):  # no key material, no value, in any output
        text = out.stdout + out.stderr
        assert "AGE-SECRET-KEY" not in text
        assert not any(f in text for f in forms(ROTATED, b"other-team-token-value", *OLD.values()))
    # the commands ended with the error, so they had their chance: nothing of the commit is live
    assert live_secret(api_client, repo.fraud) == before
    assert live_secret(api_client, repo.fraud, "other-team") is None
    cm = client.CoreV1Api(api_client).read_namespaced_config_map("feature-store", repo.fraud)
    assert "fraud_detection_v2" not in str(cm.data)


def metric(controller: Controller, name: str) -> float:
    return sum(float(line.rsplit(" ", 1)[1]) for line in controller.metrics.exposition().decode().splitlines()
               if line.startswith(name))


def test_the_controller_decrypts_refuses_what_it_cannot_and_rereads_the_key(
        sops_tools: SopsTools, kubeconfig: Path, api_client: client.ApiClient, wait_for: Any,
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    key_a, key_b = tmp_path / "a.agekey", tmp_path / "b.agekey"
    recipient_a, recipient_b = sops_tools.keygen(key_a), sops_tools.keygen(key_b)
    prefix = f"ctlsops{uuid.uuid4().hex[:6]}"
    ns = f"{prefix}-0"
    work = make_repo(tmp_path / "work", f"ctl-{prefix}", prefix, 1)
    rel = "infra/creds.enc.yaml"

    def write_secret(value: str, recipient: str) -> None:
        (work / rel).write_text(f"apiVersion: v1\nkind: Secret\nmetadata:\n  name: creds\n  namespace: {ns}\n"
                                f"stringData:\n  token: {value}\n", encoding="utf-8")
        subprocess.run([str(sops_tools.bin / "sops"), "--encrypt", "--in-place", "--age", recipient,
                        "--encrypted-regex", "^(data|stringData)$", rel], check=True, capture_output=True,
                       timeout=60, cwd=work, env=sops_tools.env(tmp_path))

    write_secret("first-token-value", recipient_a)
    commit(work, "an encrypted Secret")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(work), str(bare)], check=True)
    subprocess.run(["git", "remote", "add", "origin", str(bare)], cwd=work, check=True)

    def push(message: str) -> str:
        head = commit(work, message)
        subprocess.run(["git", "push", "-q", "origin", "main"], cwd=work, check=True, capture_output=True)
        return head

    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(key_a))  # as the component sets it in the pod
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    controller = Controller(RunConfig(repo=f"file://{bare}", interval=1.0, resync=600.0, kubeconfig=str(kubeconfig),
                                      http_addr="", cache_dir=tmp_path / "mirrors", audit_log=tmp_path / "audit.jsonl"))
    thread = threading.Thread(target=controller.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: live_secret(api_client, ns, "creds") == {"token": b"first-token-value"},
                 "the decrypted Secret applied by the controller", timeout=120)
        good = controller.commit
        # a commit encrypted for a key the controller does not hold: refused whole, the last good stays
        write_secret("second-token-value", recipient_b)
        bad = push("re-encrypt for key B")
        wait_for(lambda: metric(controller, "modelops_agent_invalid_commits_total") >= 1, "the refused commit")
        assert controller.commit == good and controller.invalid["commit"] == bad
        (error,) = controller.invalid["errors"]
        assert error.startswith(f"{rel}:1: (document): encrypted with SOPS for age recipient {recipient_b}; "
                                f"no matching identity in SOPS_AGE_KEY_FILE ({key_a})")
        assert live_secret(api_client, ns, "creds") == {"token": b"first-token-value"}
        wait_for(lambda: audit_records(tmp_path / "audit.jsonl", "invalid-commit"),
                 "the refusal's audit record (written after the metric counts)")
        audit = (tmp_path / "audit.jsonl").read_text()
        assert "invalid-commit" in audit and "token-value" not in audit
        # the key is rotated (a re-mounted Secret): the next commit is read with the new file
        key_a.write_bytes(key_b.read_bytes())
        (work / "infra" / "note.yaml").write_text("# a commit after the key rotation\n", encoding="utf-8")
        fixed = push("after the key rotation")
        wait_for(lambda: live_secret(api_client, ns, "creds") == {"token": b"second-token-value"},
                 "the commit applied with the rotated key", timeout=120)
        assert controller.commit == fixed and not controller.invalid
    finally:
        controller.stop()
        thread.join(timeout=30)
        assert not thread.is_alive(), "the controller did not stop"
        for k in range(3):
            try:
                client.CoreV1Api(api_client).delete_namespace(f"{prefix}-{k}")
            except client.ApiException as exc:
                if exc.status != 404:
                    raise
