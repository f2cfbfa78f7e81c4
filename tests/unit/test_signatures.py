"""--verify-signatures without a cluster: verify_commit against real git repos signed by real
SSH keys (ssh-keygen) and OpenPGP keys (gpg), the signers file's checks, the pipeline's order
(the signature before any file is read) and the CLI's exit codes."""

from __future__ import annotations

import json
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

import pytest

from agent.controller import Metrics
from agent.controller._signers import SignersFile
from agent.engine import load_desired
from agent.errors import SignatureError, SignersFileError, ValidationFailed
from agent.source import SignerKeys, verify_commit
from tests._signing import GIT, GpgHome, allowed_signers, commit, fingerprint, run, ssh_key, tampered
from tests.unit.conftest import EXAMPLE_REPO


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "repo"
    root.mkdir()
    run([*GIT, "init", "-q", "-b", "main"], cwd=root)
    return root


@pytest.fixture
def keys(tmp_path: Path) -> dict[str, tuple[Path, str]]:
    return {name: ssh_key(tmp_path / "keys", name) for name in ("alice", "mallory")}


@pytest.fixture
def gpg() -> Iterator[GpgHome]:
    home = GpgHome()
    try:
        yield home
    finally:
        home.close()


def _refusal(repo: Path, sha: str, signers: Path | SignerKeys) -> SignatureError:
    with pytest.raises(SignatureError) as info:
        verify_commit(repo, sha, signers)
    assert info.value.commit == sha
    return info.value


# --- SSH ------------------------------------------------------------------------------------------

def test_ssh_a_commit_signed_by_an_allowed_key_names_its_signer(repo: Path, keys: dict[str, tuple[Path, str]],
                                                                tmp_path: Path) -> None:
    alice, alice_pub = keys["alice"]
    signers = allowed_signers(tmp_path / "allowed", f'alice@example.com namespaces="git" {alice_pub}')
    sha = commit(repo, "signed", ssh=alice)
    signer = verify_commit(repo, sha, signers)
    assert (signer.kind, signer.principal, signer.key) == ("ssh", "alice@example.com",
                                                          fingerprint(alice.with_suffix(".pub")))
    assert str(signer) == f"alice@example.com (key {signer.key})"
    # as git does, the principal is the file's name for the key: the committer's email is not compared
    assert "alice@example.com" not in run(["git", "log", "-1", "--format=%ae %ce"], cwd=repo)
    # a bare repository (the controller's mirror) and a work tree's git directory work the same
    bare = tmp_path / "mirror.git"
    run(["git", "clone", "-q", "--bare", str(repo), str(bare)])
    assert verify_commit(bare, sha, signers) == signer == verify_commit(repo / ".git", sha, signers)


def test_ssh_unsigned_other_key_and_bad_signature_are_refused(repo: Path, keys: dict[str, tuple[Path, str]],
                                                              tmp_path: Path) -> None:
    alice, alice_pub = keys["alice"]
    mallory, _ = keys["mallory"]
    signers = allowed_signers(tmp_path / "allowed", f"alice@example.com {alice_pub}")
    good = commit(repo, "signed", ssh=alice)
    unsigned = commit(repo, "unsigned")
    other = commit(repo, "by mallory", ssh=mallory)

    refused = _refusal(repo, unsigned, signers)
    assert str(refused) == f"commit {unsigned[:12]} is not signed"
    assert (refused.signer, refused.reason) == ("unsigned", "unsigned")

    refused = _refusal(repo, other, signers)
    key = fingerprint(mallory.with_suffix(".pub"))
    assert refused.reason == "not-allowed" and refused.signer == f"key {key}"
    assert str(refused).startswith(f"commit {other[:12]} is signed by key {key}, which is not allowed by {signers} ")

    for forged in (tampered(repo, good), tampered(repo, other)):
        refused = _refusal(repo, forged, signers)
        assert refused.reason == "bad-signature", str(refused)
        assert str(refused).startswith(f"commit {forged[:12]} has a bad signature (SSH key ")


def test_ssh_namespaces_validity_and_cert_authority(repo: Path, keys: dict[str, tuple[Path, str]],
                                                    tmp_path: Path) -> None:
    alice, alice_pub = keys["alice"]
    sha = commit(repo, "signed", ssh=alice)
    other_use = allowed_signers(tmp_path / "files-only", f'alice@example.com namespaces="file" {alice_pub}')
    refused = _refusal(repo, sha, other_use)
    assert "(principal alice@example.com)" in str(refused) and 'signature namespace "git"' in str(refused)
    assert str(tempfile.gettempdir()) + "/modelops-verify-" not in str(refused)  # our copy's path is not shown

    expired = allowed_signers(tmp_path / "expired", f'"alice@example.com" valid-before="20200101" {alice_pub}')
    assert "key has expired" in str(_refusal(repo, sha, expired))
    several = allowed_signers(tmp_path / "several", f'a@x,alice@example.com namespaces="file,git" {alice_pub} a "comment')
    assert verify_commit(repo, sha, several).principal == "a@x"  # git names the first principal

    # a certificate signed by a CA listed as cert-authority: the principal is the certificate's
    ca, ca_pub = ssh_key(tmp_path / "keys", "ca")
    dave, _ = ssh_key(tmp_path / "keys", "dave")
    run(["ssh-keygen", "-q", "-s", str(ca), "-I", "dave", "-n", "dave@example.com", str(dave) + ".pub"])
    by_cert = commit(repo, "by dave's certificate", ssh=Path(str(dave) + "-cert.pub"))
    authority = allowed_signers(tmp_path / "ca", f'*@example.com cert-authority,namespaces="git" {ca_pub}')
    assert verify_commit(repo, by_cert, authority).principal == "dave@example.com"
    assert _refusal(repo, by_cert, allowed_signers(tmp_path / "alice-only", f"alice@example.com {alice_pub}"))


# --- OpenPGP --------------------------------------------------------------------------------------

@pytest.mark.parametrize("armor", [True, False])
def test_openpgp_keyring_armored_or_binary(armor: bool, repo: Path, gpg: GpgHome, tmp_path: Path) -> None:
    carol = gpg.key("Carol <carol@example.com>")
    eve = gpg.key("Eve <eve@example.com>")
    keyring = gpg.export(tmp_path / "keyring", "carol@example.com", armor=armor)
    loaded = SignerKeys.load(keyring)
    assert loaded.kind == "openpgp" and [k.key for k in loaded.keys] == [carol]

    good = commit(repo, "by carol", gpg=gpg, uid="carol@example.com")
    signer = verify_commit(repo, good, keyring)
    assert (signer.kind, signer.principal, signer.key) == ("openpgp", "Carol <carol@example.com>", carol)

    other = commit(repo, "by eve", gpg=gpg, uid="eve@example.com")
    refused = _refusal(repo, other, loaded)
    assert refused.reason == "not-allowed" and str(refused) == (
        f"commit {other[:12]} is signed by OpenPGP key {eve}, which is not allowed by {loaded.description}")
    unsigned = commit(repo, "unsigned")
    assert _refusal(repo, unsigned, loaded).reason == "unsigned"
    forged = tampered(repo, good)
    refused = _refusal(repo, forged, loaded)
    assert refused.reason == "bad-signature" and "bad signature" in str(refused)


def test_a_signature_of_the_other_format_is_not_allowed(repo: Path, gpg: GpgHome, keys: dict[str, tuple[Path, str]],
                                                        tmp_path: Path) -> None:
    gpg.key("Carol <carol@example.com>")
    keyring = gpg.export(tmp_path / "keyring.asc", "carol@example.com")
    alice, alice_pub = keys["alice"]
    by_ssh = commit(repo, "ssh", ssh=alice)
    by_gpg = commit(repo, "gpg", gpg=gpg, uid="carol@example.com")
    refused = _refusal(repo, by_ssh, keyring)
    assert refused.reason == "not-allowed" and f"SSH key {fingerprint(alice.with_suffix('.pub'))}" in str(refused)
    refused = _refusal(repo, by_gpg, allowed_signers(tmp_path / "allowed", f"alice@example.com {alice_pub}"))
    assert refused.reason == "not-allowed" and "an OpenPGP key" in str(refused)


def test_verification_leaves_no_directory_agent_or_gnupg_home(repo: Path, gpg: GpgHome, tmp_path: Path,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    gpg.key("Carol <carol@example.com>")
    keyring = gpg.export(tmp_path / "keyring.asc", "carol@example.com")
    sha = commit(repo, "by carol", gpg=gpg, uid="carol@example.com")
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("GNUPGHOME", str(gpg.home))  # not inherited: the keyring alone decides
    before = set(Path(tempfile.gettempdir()).glob("modelops-verify-*"))
    for _ in range(3):
        verify_commit(repo, sha, keyring)
    assert set(Path(tempfile.gettempdir()).glob("modelops-verify-*")) == before
    assert list(home.iterdir()) == []  # no ~/.gnupg made
    agents = subprocess.run(["pgrep", "-af", "modelops-verify-"], capture_output=True, text=True).stdout
    assert agents == ""


# --- the signers file -----------------------------------------------------------------------------

def test_the_signers_file_is_checked_once_with_clear_errors(tmp_path: Path, gpg: GpgHome,
                                                            keys: dict[str, tuple[Path, str]]) -> None:
    alice, alice_pub = keys["alice"]
    kind, blob = alice_pub.split()[:2]

    def error(content: bytes | None, name: str = "signers") -> str:
        path = tmp_path / name
        if content is not None:
            path.write_bytes(content)
        with pytest.raises(SignersFileError) as info:
            SignerKeys.load(path)
        assert str(path) in str(info.value)
        return str(info.value)

    assert "cannot read" in error(None, "missing") and "No such file" in error(None, "missing")
    assert "is empty" in error(b"") and "is empty" in error(b" \n\t\n")
    assert "only comments" in error(b"# nobody\n\n")
    assert "neither an SSH allowed-signers file nor an OpenPGP public keyring" in error(b"\xff\xfe\x00garbage")
    assert error(b"just some text\n").endswith(
        ":1: no known key type (one of ecdsa-sha2-nistp256, ecdsa-sha2-nistp384, ecdsa-sha2-nistp521, "
        "sk-ecdsa-sha2-nistp256@openssh.com, sk-ssh-ed25519@openssh.com, ssh-dss, ssh-ed25519, ssh-rsa) "
        "(neither an SSH allowed-signers file nor an OpenPGP public keyring?)")
    assert ":1: no known key type" in error(b"alice ssh-foo AAAA\n")
    assert ":2: the key is not valid base64" in error(f"a {alice_pub}\nb {kind} not*base64\n".encode())
    assert "not of the type ssh-rsa" in error(f"a ssh-rsa {blob}\n".encode())
    assert "unknown option 'command'" in error(f'a command="x" {alice_pub}\n'.encode())
    assert "valid-before: not a time" in error(f'a valid-before="soon" {alice_pub}\n'.encode())
    assert "cert-authority takes no value" in error(f"a cert-authority=yes {alice_pub}\n".encode())
    assert "unterminated quote" in error(f'"a {alice_pub}\n'.encode())
    private = alice.read_bytes()
    message = error(private)
    assert "holds a private key" in message and private.decode().splitlines()[1][:20] not in message
    gpg.key("Carol <carol@example.com>")
    secret = gpg.export_secret(tmp_path / "secret.asc", "carol@example.com").read_bytes()
    assert "holds a private key" in error(secret)
    assert "no public keyring" in error(b"-----BEGIN PGP SIGNATURE-----\n\nabc\n-----END PGP SIGNATURE-----\n")
    assert "not a usable OpenPGP keyring" in error(b"-----BEGIN PGP PUBLIC KEY BLOCK-----\n\nbroken\n"
                                                   b"-----END PGP PUBLIC KEY BLOCK-----\n")

    good = allowed_signers(tmp_path / "good", f"alice@example.com {alice_pub}")
    loaded = SignerKeys.load(good)
    assert loaded.kind == "ssh" and loaded.description == f"{good} (an SSH allowed-signers file, 1 key(s))"
    assert loaded.keys[0].key == fingerprint(alice.with_suffix(".pub"))
    assert loaded.reload() is loaded  # unchanged bytes: the same object


def test_the_controller_re_reads_the_file_and_re_verifies_after_a_change(tmp_path: Path,
                                                                        keys: dict[str, tuple[Path, str]]) -> None:
    _alice, alice_pub = keys["alice"]
    _mallory, mallory_pub = keys["mallory"]
    path = allowed_signers(tmp_path / "allowed", f"alice@example.com {alice_pub}")
    signers = SignersFile(path)
    assert not signers.changed_since_refusal()
    signers.refused()
    assert not signers.changed_since_refusal()  # nothing changed: the refusal stands
    allowed_signers(path, f"alice@example.com {alice_pub}", f"forge@example.com {mallory_pub}")
    assert signers.changed_since_refusal()
    assert len(signers.current().keys) == 2
    signers.refused()
    assert not signers.changed_since_refusal()
    path.write_text("broken\n")
    assert not signers.changed_since_refusal()  # an unusable file does not un-refuse anything
    with pytest.raises(SignersFileError):
        signers.current()
    signers.accepted()
    assert not signers.changed_since_refusal()


def test_the_refusal_metric_exists_from_the_start() -> None:
    metrics = Metrics(process=False)
    text = metrics.exposition().decode()
    assert 'modelops_agent_commits_refused_total{reason="signature"} 0.0' in text
    metrics.commit_refused("signature")
    assert 'modelops_agent_commits_refused_total{reason="signature"} 1.0' in metrics.exposition().decode()
    with pytest.raises(ValueError):
        metrics.commit_refused("other")


# --- the pipeline and the CLI ---------------------------------------------------------------------

@pytest.fixture
def model_repo(tmp_path: Path, keys: dict[str, tuple[Path, str]]) -> tuple[Path, Path, str]:
    """The example model repo, its first commit signed by alice: (repo, signers file, commit)."""
    import shutil

    root = tmp_path / "models"
    shutil.copytree(EXAMPLE_REPO, root)
    run([*GIT, "init", "-q", "-b", "main"], cwd=root)
    sha = commit(root, "models", ssh=keys["alice"][0])
    return root, allowed_signers(tmp_path / "allowed", f"alice@example.com {keys['alice'][1]}"), sha


def test_load_desired_verifies_before_reading_and_keeps_the_signer(model_repo: tuple[Path, Path, str]) -> None:
    root, signers_file, sha = model_repo
    signers = SignerKeys.load(signers_file)
    for cached in (False, True, True):
        desired = load_desired(root, "main", signers=signers, cached=cached)
        assert desired.revision.commit == sha and desired.revision.ref == "main"
        assert desired.revision.signer.startswith("alice@example.com (key SHA256:")
    assert load_desired(root, "main").revision.signer == ""
    # an unsigned commit that is also invalid: refused for its signature, its files never read
    (root / "broken.yaml").write_text("kind: Model\nspec: [\n")
    unsigned = commit(root, "broken")
    with pytest.raises(ValidationFailed):
        load_desired(root, unsigned)
    with pytest.raises(SignatureError, match=f"commit {unsigned[:12]} is not signed"):
        load_desired(root, unsigned, signers=signers)
    with pytest.raises(SignatureError):
        load_desired(root, "main", signers=signers, cached=True)  # main moved to the unsigned commit


@pytest.fixture
def agent(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Callable[..., Ran]:
    """`agent ARGS...` in this process (env: variables set for that call): (exit code, stdout, stderr)."""
    from agent import cli

    def call(*args: str, env: dict[str, str] | None = None) -> Ran:
        capsys.readouterr()
        with monkeypatch.context() as m:
            m.delenv("AGENT_VERIFY_SIGNATURES", raising=False)
            for name, value in (env or {}).items():
                m.setenv(name, value)
            code = cli.main(list(args))
        out, err = capsys.readouterr()
        return Ran(code, out, err)

    return call


class Ran(NamedTuple):
    returncode: int
    stdout: str
    stderr: str


def test_cli_flag_env_and_exit_codes(model_repo: tuple[Path, Path, str], tmp_path: Path,
                                     agent: Callable[..., Ran]) -> None:
    root, signers, sha = model_repo
    ok = agent("render", str(root), "--revision", "HEAD", "--verify-signatures", str(signers), "-o", "json")
    assert ok.returncode == 0, ok.stderr
    assert json.loads(ok.stdout)["kind"] == "List"

    no_revision = agent("render", str(root), "--verify-signatures", str(signers))
    assert no_revision.returncode == 2 and "--verify-signatures (or AGENT_VERIFY_SIGNATURES) needs --revision" in (
        no_revision.stderr)
    env_only = agent("diff", str(root), "--base", "HEAD", env={"AGENT_VERIFY_SIGNATURES": str(signers)})
    assert env_only.returncode == 2 and "needs --revision" in env_only.stderr

    unsigned = commit(root, "unsigned change")
    for command in (["render"], ["diff", "--base", sha], ["apply", "--kubeconfig", str(tmp_path / "none")]):
        refused = agent(*command, str(root), "--revision", "HEAD", env={"AGENT_VERIFY_SIGNATURES": str(signers)})
        assert refused.returncode == 2, refused.stderr
        assert refused.stderr.strip() == f"error: commit {unsigned[:12]} is not signed", refused.stderr
        assert refused.stdout == ""
    # the flag wins over the variable
    wins = agent("render", str(root), "--revision", sha, "--verify-signatures", str(signers),
                  env={"AGENT_VERIFY_SIGNATURES": str(tmp_path / "missing")})
    assert wins.returncode == 0, wins.stderr
    broken = agent("render", str(root), "--revision", sha, "--verify-signatures", str(tmp_path / "missing"))
    assert broken.returncode == 2
    assert broken.stderr.strip() == f"error: cannot read the signers file {tmp_path / 'missing'}: No such file or directory"
    # the base of an offline diff is what it is compared with: not verified
    assert agent("diff", str(root), "--base", "HEAD", "--revision", sha, "--verify-signatures",
                  str(signers)).returncode == 0


def test_agent_run_checks_the_file_before_anything_else(tmp_path: Path, agent: Callable[..., Ran]) -> None:
    missing = tmp_path / "missing"
    run_it = agent("run", "--repo", str(tmp_path), "--verify-signatures", str(missing), "--kubeconfig",
                    str(tmp_path / "none"), "--http-addr", "")
    assert run_it.returncode == 2 and f"cannot read the signers file {missing}" in run_it.stderr
    empty = tmp_path / "empty"
    empty.write_text("")
    watch = agent("run", "--watch-dir", str(tmp_path), "--http-addr", "", env={"AGENT_VERIFY_SIGNATURES": str(empty)})
    assert watch.returncode == 2 and "a working copy (--watch-dir) has no commit to verify" in watch.stderr
