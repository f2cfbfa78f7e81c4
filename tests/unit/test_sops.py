"""SOPS decryption at the source edge, against files the real `sops` encrypts (tools/sops): every
value type, the encryption rules, the MAC, wrong and missing keys, the key sources, and that
nothing decrypted reaches a disk, a cache or a message."""

from __future__ import annotations

import base64
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from agent.engine import load_desired
from agent.errors import SpecError, ValidationFailed
from agent.source import DirectorySource, KeyRing, Snapshot, decrypt_snapshot, use_age_key_file
from agent.spec._yaml import _Loader as YAML  # the agent's reading: YAML 1.1 plus exponent floats
from tests._sops_tools import SopsTools
from tests.unit.conftest import t

SECRET = t("""
    # credentials of the team's object store
    apiVersion: v1
    kind: Secret
    metadata:
      name: creds
      namespace: team
      annotations:
        owner: "data-platform" # who rotates it
    type: Opaque
    stringData:
      user: alice
      password: "p@ss: w\\u00f6rd \\"quoted\\" \\u2713 \\t tab"
      port: 8080
      octal: 0755
      ratio: 1.5
      tiny: 1.0e-7
      huge: 1e300
      enabled: true
      "on": yes
      empty: ""
      multi: |
        line one
        line two
      date: 2024-01-01
      list:
        - one
        # a comment in the list
        - 2
      nothing: null
      note_unencrypted: stays readable
    """)
EXPECTED = {  # SECRET as sops reads it (YAML 1.2: `yes` a string, 0755 octal, a date a timestamp)
    "apiVersion": "v1", "kind": "Secret", "type": "Opaque",
    "metadata": {"name": "creds", "namespace": "team", "annotations": {"owner": "data-platform"}},
    "stringData": {
        "user": "alice", "password": 'p@ss: wörd "quoted" ✓ \t tab', "port": 8080, "octal": 493, "ratio": 1.5,
        "tiny": 1e-7, "huge": 1e300, "enabled": True, "on": "yes", "empty": "", "multi": "line one\nline two\n",
        "date": "2024-01-01T00:00:00Z", "list": ["one", 2], "nothing": None, "note_unencrypted": "stays readable",
    },
}
SERVICE_ACCOUNT = t("""
    apiVersion: v1
    kind: ServiceAccount
    metadata:
      name: reader
      namespace: team
    """)
FLUX = "^(data|stringData)$"


@dataclass(frozen=True)
class Keys:
    tools: SopsTools
    work: Path
    key_a: Path
    recipient_a: str
    key_b: Path
    recipient_b: str

    def encrypt(self, text: str, *recipients: str, args: tuple[str, ...] = (), name: str = "secret.yaml") -> bytes:
        plain = self.work / name
        plain.write_text(text, encoding="utf-8")
        try:
            return self.tools.encrypt(plain, *(recipients or (self.recipient_a,)), args=args)
        finally:
            plain.unlink()


@pytest.fixture(scope="module")
def keys(sops_tools: SopsTools, tmp_path_factory: pytest.TempPathFactory) -> Keys:
    work = tmp_path_factory.mktemp("sops")
    key_a, key_b = work / "a.agekey", work / "b.agekey"
    return Keys(sops_tools, work, key_a, sops_tools.keygen(key_a), key_b, sops_tools.keygen(key_b))


@pytest.fixture(autouse=True)
def _no_ambient_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """No identity but the ones a test gives: not the demo key of the session, not the user's."""
    for name in ("SOPS_AGE_KEY_FILE", "SOPS_AGE_KEY"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "config"))
    use_age_key_file(None)
    yield
    use_age_key_file(None)


def ring(*files: Path, key: str | None = None) -> KeyRing:
    environ = {"SOPS_AGE_KEY_FILE": str(files[0])} if files else {}
    if key is not None:
        environ["SOPS_AGE_KEY"] = key
    return KeyRing(environ=environ)


def opened(content: bytes, keyring: KeyRing, path: str = "teams/x/secret.yaml") -> Snapshot:
    return decrypt_snapshot(Snapshot(files={path: content}), keys=keyring)


def decrypted(content: bytes, keyring: KeyRing) -> bytes:
    snap = opened(content, keyring)
    assert snap.problems == [], snap.problems
    return snap.files["teams/x/secret.yaml"]


def plain(data: Any) -> Any:
    """yaml.safe_load's datetimes as sops writes them, for comparing with `sops -d`."""
    if isinstance(data, dict):
        return {k: plain(v) for k, v in data.items()}
    if isinstance(data, list):
        return [plain(v) for v in data]
    if hasattr(data, "isoformat"):
        return data.isoformat().replace("+00:00", "Z")
    return data


def secret_values(objects: list[dict[str, Any]]) -> dict[str, bytes]:
    """The rendered Secret's values (the renderer writes stringData as data)."""
    secret = next(o for o in objects if o["kind"] == "Secret")
    return {k: base64.b64decode(v) for k, v in secret["data"].items()}


def only_problem(snap: Snapshot) -> SpecError:
    assert len(snap.problems) == 1, snap.problems
    assert snap.files == {}, "a file that does not open is left out"
    return snap.problems[0]


# --- what sops writes, we read ------------------------------------------------------------------


@pytest.mark.parametrize("args", [(), ("--encrypted-regex", FLUX), ("--unencrypted-regex", "^(metadata|kind)$"),
                                  ("--encrypted-suffix", "word"), ("--mac-only-encrypted",),
                                  ("--encrypted-regex", FLUX, "--mac-only-encrypted")],
                         ids=["default", "encrypted-regex", "unencrypted-regex", "encrypted-suffix", "mac-only",
                              "regex-mac-only"])
def test_decrypts_every_value_type_as_sops_does(keys: Keys, args: tuple[str, ...]) -> None:
    encrypted = keys.encrypt(SECRET, args=args)
    assert b"ENC[AES256_GCM," in encrypted and b"p@ss" not in encrypted
    out = decrypted(encrypted, ring(keys.key_a))
    ours = yaml.load(out, Loader=YAML)
    reference = plain(yaml.load(keys.tools.decrypt(encrypted, keys.key_a, keys.work), Loader=YAML))
    if "--encrypted-suffix" in args:  # only `password` is encrypted; the rest is read as written, like any file
        assert ours["stringData"]["password"] == reference["stringData"]["password"] == EXPECTED["stringData"]["password"]
    else:
        assert ours == reference
    if not args:
        assert ours == EXPECTED
    # replaced in place: the decrypted file has the encrypted file's lines, so errors point into Git's file
    assert out.count(b"\n") == encrypted.count(b"\n")
    assert b"sops:" not in out
    assert all(line.split(b"ENC[")[0].endswith(b"#") for line in out.splitlines() if b"ENC[" in line)  # comments


def test_multi_document_files_and_several_recipients(keys: Keys) -> None:
    encrypted = keys.encrypt(SERVICE_ACCOUNT + "---\n" + SECRET, keys.recipient_a, keys.recipient_b,
                             args=("--encrypted-regex", FLUX))
    for key in (keys.key_a, keys.key_b):  # either recipient's identity opens it
        docs = list(yaml.safe_load_all(decrypted(encrypted, ring(key))))
        assert docs[0] == yaml.safe_load(SERVICE_ACCOUNT)
        assert docs[1]["stringData"]["password"] == EXPECTED["stringData"]["password"]  # type: ignore[index]


def test_the_loader_reads_the_decrypted_secret(keys: Keys, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    (repo / "infra").mkdir(parents=True)
    (repo / "infra" / "creds.yaml").write_bytes(keys.encrypt(t("""
        apiVersion: v1
        kind: Secret
        metadata:
          name: creds
        stringData:
          token: s3cr3t-t0ken
        data:
          blob: c2VjcmV0LWJsb2I=
        """), args=("--encrypted-regex", FLUX)))
    (repo / ".sops.yaml").write_text(f"creation_rules:\n  - age: {keys.recipient_a}\n")  # sops's config: no manifest
    use_age_key_file(keys.key_a)
    desired = load_desired(repo)
    assert secret_values(desired.objects) == {"token": b"s3cr3t-t0ken", "blob": b"secret-blob"}


# --- refused: tampering, wrong and missing keys -------------------------------------------------


def tamper(encrypted: bytes, old: bytes, new: bytes) -> bytes:
    assert old in encrypted
    return encrypted.replace(old, new, 1)


def test_mac_and_ciphertext_tampering_is_refused(keys: Keys) -> None:
    encrypted = keys.encrypt(SECRET, args=("--encrypted-regex", FLUX))
    key = ring(keys.key_a)
    # a readable value changed: the MAC (over every value) no longer matches
    problem = only_problem(opened(tamper(encrypted, b"name: creds", b"name: other"), key))
    assert problem.file == "teams/x/secret.yaml" and "MAC does not match" in problem.message
    # a MAC of another file (or an edited lastmodified)
    problem = only_problem(opened(re.sub(rb'lastmodified: "\d', b'lastmodified: "1', encrypted, count=1), key))
    assert "MAC does not decrypt" in problem.message
    # two encrypted values swapped: each is bound to its path
    values = dict(re.findall(rb"\n    (user|port): (ENC\[[^\]]+\])", encrypted))
    swapped = tamper(tamper(encrypted, values[b"user"], b"@@"), values[b"port"], values[b"user"]).replace(
        b"@@", values[b"port"])
    problem = only_problem(opened(swapped, key))
    assert problem.field == "stringData.user" and "does not decrypt" in problem.message
    assert problem.line == encrypted[:encrypted.index(b"    user:")].count(b"\n") + 1
    # a damaged ciphertext
    data = re.search(rb"user: ENC\[AES256_GCM,data:([^,]+)", encrypted)
    assert data is not None
    flipped = (b"B" if data.group(1)[:1] == b"A" else b"A") + data.group(1)[1:]
    assert "does not decrypt" in only_problem(opened(tamper(encrypted, data.group(1), flipped), key)).message
    # a value the rules encrypt, written in the clear
    problem = only_problem(opened(tamper(encrypted, values[b"user"], b"mallory"), key))
    assert "not a SOPS-encrypted value" in problem.message and "mallory" not in problem.message
    # no MAC at all
    assert "no valid MAC" in only_problem(opened(re.sub(rb"\n    mac: [^\n]+", b"", encrypted), key)).message


def test_encrypted_values_only_in_secrets(keys: Keys) -> None:
    """Any other kind's values show in plans and diffs (a PR comment): refused, naming the document."""
    config_map = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: settings\ndata:\n  api-key: k3y-value\n"
    problem = only_problem(opened(keys.encrypt(config_map, args=("--encrypted-regex", FLUX)), ring(keys.key_a)))
    assert problem.line == 1 and "accepted in v1 Secrets only" in problem.message and "k3y" not in problem.message
    # sops's default rules encrypt every value: the ServiceAccount beside the Secret too
    both = keys.encrypt(SERVICE_ACCOUNT + "---\n" + SECRET)
    problem = only_problem(opened(both, ring(keys.key_a)))
    assert problem.line == 1 and "accepted in v1 Secrets only" in problem.message
    with_regex = keys.encrypt(SERVICE_ACCOUNT + "---\n" + SECRET, args=("--encrypted-regex", FLUX))
    assert opened(with_regex, ring(keys.key_a)).problems == []


def test_a_wrong_key_names_the_file_recipient_and_source(keys: Keys) -> None:
    encrypted = keys.encrypt(SECRET)
    problem = only_problem(opened(encrypted, ring(keys.key_b)))
    assert str(problem).startswith("teams/x/secret.yaml:1: ")
    assert f"encrypted with SOPS for age recipient {keys.recipient_a}; no matching identity in " \
           f"SOPS_AGE_KEY_FILE ({keys.key_b})" in problem.message
    assert "AGE-SECRET-KEY" not in str(problem) and keys.recipient_b not in str(problem)


def test_no_key_at_all_is_a_clear_error(keys: Keys) -> None:
    problem = only_problem(opened(keys.encrypt(SECRET), KeyRing.from_environment()))
    assert problem.message == (f"encrypted with SOPS for age recipient {keys.recipient_a}; no age identity given "
                               "(--sops-age-key-file FILE, or SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)")


def test_key_sources_as_sops_reads_them(keys: Keys, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    encrypted = keys.encrypt(SECRET)
    secret_a = keys.key_a.read_text().splitlines()[-1]
    secret_b = keys.key_b.read_text().splitlines()[-1]
    # SOPS_AGE_KEY: identities in the variable, several to a line
    monkeypatch.setenv("SOPS_AGE_KEY", f"{secret_b} {secret_a}")
    assert opened(encrypted, KeyRing.from_environment()).problems == []
    monkeypatch.delenv("SOPS_AGE_KEY")
    # sops's default key file under $XDG_CONFIG_HOME
    default = tmp_path / "config" / "sops" / "age" / "keys.txt"
    default.parent.mkdir(parents=True)
    shutil.copy(keys.key_a, default)
    assert opened(encrypted, KeyRing.from_environment()).problems == []
    # --sops-age-key-file is the only source when given, whatever else is there
    use_age_key_file(keys.key_b)
    monkeypatch.setenv("SOPS_AGE_KEY_FILE", str(keys.key_a))
    problem = only_problem(opened(encrypted, KeyRing.from_environment()))
    assert problem.message.endswith(f"no matching identity in --sops-age-key-file ({keys.key_b})")
    # a key file that cannot be read, or holds no identity: named by line, never shown
    use_age_key_file(tmp_path / "missing.agekey")
    assert "cannot read the age key file --sops-age-key-file" in only_problem(
        opened(encrypted, KeyRing.from_environment())).message
    bad = tmp_path / "bad.agekey"
    bad.write_text(f"# a comment\n{secret_a}\n{secret_a[:-3]}xyz\n")
    use_age_key_file(bad)
    problem = only_problem(opened(encrypted, KeyRing.from_environment()))
    assert "line 3 is a malformed age identity" in problem.message and "AGE-SECRET" not in problem.message


def test_age_primitives_match_the_age_tools(keys: Keys) -> None:
    """Our X25519 recipient and age decryption against `age-keygen -y` and `age -e -a`."""
    from agent.source._age import decrypt, parse_identities  # the module under test

    identity = parse_identities(keys.key_a.read_text())[0]
    shown = subprocess.run([str(keys.tools.bin / "age-keygen"), "-y", str(keys.key_a)], capture_output=True, text=True,
                           check=True, timeout=30).stdout.strip()
    assert identity.recipient == shown == keys.recipient_a
    assert "AGE-SECRET" not in repr(identity)
    payload = os.urandom(32)
    armored = subprocess.run([str(keys.tools.bin / "age"), "-e", "-a", "-r", keys.recipient_b, "-r", keys.recipient_a],
                             input=payload, capture_output=True, check=True, timeout=30).stdout.decode()
    assert decrypt(armored, [identity]) == payload
    for_b = subprocess.run([str(keys.tools.bin / "age"), "-e", "-a", "-r", keys.recipient_b], input=payload,
                           capture_output=True, check=True, timeout=30).stdout.decode()
    assert decrypt(for_b, [identity]) is None  # not a recipient: no error, no plaintext


# --- nothing decrypted on disk, in a cache or in a message ---------------------------------------


@pytest.fixture()
def secret_repo(keys: Keys, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    (repo / "infra").mkdir(parents=True)
    (repo / "repo.yaml").write_text(t("""
        apiVersion: modelops.dev/v1alpha1
        kind: RepositoryConfig
        metadata:
          name: sops-test
        spec:
          policy:
            allowedNamespaces: [team]
        """))
    (repo / "infra" / "creds.yaml").write_bytes(keys.encrypt(t("""
        apiVersion: v1
        kind: Secret
        metadata:
          name: creds
          namespace: team
        stringData:
          token: s3cr3t-t0ken-value
        """)))
    git = ["git", "-c", "user.name=t", "-c", "user.email=t@example.com"]
    subprocess.run([*git, "init", "-q"], cwd=repo, check=True)
    subprocess.run([*git, "add", "-A"], cwd=repo, check=True)
    subprocess.run([*git, "commit", "-qm", "encrypted"], cwd=repo, check=True)
    return repo


def test_nothing_decrypted_is_written(keys: Keys, secret_repo: Path, tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Every file this process opens for writing while loading a repo with a SOPS file: none (the
    render cache, which holds a repo without one, stays empty); and no temp file either."""
    monkeypatch.setenv("AGENT_CACHE_DIR", str(tmp_path / "cache"))
    use_age_key_file(keys.key_a)
    writes: list[str] = []
    watching = [True]

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if not watching[0]:
            return
        if event == "open" and len(args) >= 3 and not isinstance(args[0], int):  # an int: a pipe to git
            mode, flags = args[1], args[2]
            if (isinstance(mode, str) and any(c in mode for c in "wax+")) or (
                    isinstance(flags, int) and flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT)):
                writes.append(f"{event} {args[0]}")
        elif event in ("tempfile.mkstemp", "tempfile.mkdtemp", "os.rename", "os.replace", "shutil.copyfile"):
            writes.append(f"{event} {args[0]}")

    use_age_key_file(keys.key_a)
    load_desired(secret_repo, "HEAD")  # imports done (a first import may write its bytecode)
    sys.addaudithook(hook)
    try:
        for revision in ("HEAD", None):  # a commit (git source) and the directory
            assert secret_values(load_desired(secret_repo, revision).objects) == {"token": b"s3cr3t-t0ken-value"}
    finally:
        watching[0] = False
    assert writes == []
    assert not (tmp_path / "cache" / "desired").exists() or not any((tmp_path / "cache" / "desired").iterdir())


def test_a_message_that_would_show_a_decrypted_value_is_withheld(keys: Keys, tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    (repo / "repo.yaml").write_text("apiVersion: modelops.dev/v1alpha1\nkind: RepositoryConfig\nmetadata:\n"
                                    "  name: t\nspec:\n  policy:\n    allowedNamespaces: [team]\n")
    # every value encrypted (sops's default): the namespace too, which the policy refuses
    (repo / "creds.yaml").write_bytes(keys.encrypt(t("""
        apiVersion: v1
        kind: Secret
        metadata:
          name: creds
          namespace: hidden-namespace-name
        stringData:
          token: s3cr3t
        """)))
    use_age_key_file(keys.key_a)
    with pytest.raises(ValidationFailed) as info:
        load_desired(repo)
    shown = str(info.value)
    assert "creds.yaml:5: metadata.namespace: (message withheld" in shown
    assert "hidden-namespace-name" not in shown and "s3cr3t" not in shown


def test_validate_without_a_key_skips_the_encrypted_files(keys: Keys, secret_repo: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    assert main(["validate", str(secret_repo)]) == 0
    captured = capsys.readouterr()
    assert "1 SOPS-encrypted file(s) not validated, no age identity given" in captured.err
    assert "infra/creds.yaml" in captured.err
    # with a key, validate decrypts (and so checks the key and the MAC); a wrong key fails it
    assert main(["validate", str(secret_repo), "--sops-age-key-file", str(keys.key_a)]) == 0
    assert main(["validate", str(secret_repo), "--sops-age-key-file", str(keys.key_b)]) == 2
    assert "no matching identity" in capsys.readouterr().err


def test_render_and_diff_show_no_value_in_any_encoding(keys: Keys, secret_repo: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    from agent.cli import main

    value = "s3cr3t-t0ken-value"
    forms = (value, base64.b64encode(value.encode()).decode().rstrip("="))
    key = ["--sops-age-key-file", str(keys.key_a)]
    for args in (["render", str(secret_repo)], ["render", str(secret_repo), "-o", "json"],
                 ["render", str(secret_repo), "--revision", "HEAD"],
                 ["diff", str(secret_repo), "--base", "HEAD", "--revision", "HEAD"]):
        assert main([*args, *key]) == 0, args
        captured = capsys.readouterr()
        assert not any(f in captured.out + captured.err for f in forms), args
    # and the file on disk never held it either
    assert value.encode() not in (secret_repo / "infra" / "creds.yaml").read_bytes()
    assert main(["render", str(secret_repo), "--show-secrets", *key]) == 0  # only when asked
    assert base64.b64encode(value.encode()).decode() in capsys.readouterr().out


def test_snapshot_without_sops_files_is_the_same_object(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text("apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: sops\ndata:\n  sops: x\n")
    snap = DirectorySource(tmp_path).snapshot()
    assert decrypt_snapshot(snap, keys=KeyRing()) is snap  # a nested `sops` key is no SOPS file


def test_the_flag_on_every_command_that_reads_the_repo(monkeypatch: pytest.MonkeyPatch) -> None:
    from agent.cli import build_parser

    parser = build_parser()
    for command in (["validate"], ["render"], ["diff"], ["apply"], ["status"], ["rollout", "status"]):
        assert parser.parse_args([*command, "--sops-age-key-file", "k.txt"]).sops_age_key_file == "k.txt", command
    monkeypatch.setenv("AGENT_SOPS_AGE_KEY_FILE", "/etc/modelops/sops-age/keys.txt")  # every run flag as AGENT_<FLAG>
    assert build_parser().parse_args(["run", "--repo", "x"]).sops_age_key_file == "/etc/modelops/sops-age/keys.txt"
