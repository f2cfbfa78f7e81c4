"""Signing keys and signed commits for the --verify-signatures tests (unit and integration):
real SSH keys (ssh-keygen) and OpenPGP keys (gpg, in a private GNUPGHOME whose agent is stopped
and whose directory is removed on close), commits signed by git itself."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Mapping
from pathlib import Path

GIT = ["git", "-c", "user.name=Signer", "-c", "user.email=signer@modelops.invalid"]


def run(argv: list[str], cwd: Path | None = None, env: Mapping[str, str] | None = None) -> str:
    return subprocess.run(argv, cwd=cwd, env=None if env is None else dict(env), check=True, capture_output=True,
                          text=True, timeout=60).stdout


def ssh_key(directory: Path, name: str) -> tuple[Path, str]:
    """A new ed25519 key without passphrase: (private key file, public key line)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = directory / name
    run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(key)])
    return key, (directory / f"{name}.pub").read_text().strip()


def fingerprint(public_file: Path) -> str:
    """SHA256:... as ssh-keygen prints it."""
    return run(["ssh-keygen", "-l", "-f", str(public_file)]).split()[1]


def allowed_signers(path: Path, *lines: str) -> Path:
    """An allowed-signers file of `principal [options] public-key` lines."""
    path.write_text("# who may sign commits\n" + "".join(f"{line}\n" for line in lines))
    return path


def commit(repo: Path, message: str, *, ssh: Path | None = None, gpg: GpgHome | None = None, uid: str = "",
           env: Mapping[str, str] | None = None, allow_empty: bool = True) -> str:
    """Commit everything in `repo`: signed with the SSH key file `ssh`, or the OpenPGP key `uid`
    of `gpg`, or unsigned. Returns the commit id."""
    base = dict(os.environ if env is None else env)
    sign: list[str] = ["-c", "commit.gpgsign=false"]
    if ssh is not None:
        sign = ["-c", "gpg.format=ssh", "-c", f"user.signingkey={ssh}"]
    elif gpg is not None:
        sign = ["-c", "gpg.format=openpgp", "-c", "gpg.program=gpg", "-c", f"user.signingkey={uid}"]
        base["GNUPGHOME"] = str(gpg.home)
    run([*GIT, "add", "-A"], cwd=repo, env=base)
    flags = ["-S"] if (ssh is not None or gpg is not None) else []
    run([*GIT, *sign, "commit", "-q", *(["--allow-empty"] if allow_empty else []), *flags, "-m", message],
        cwd=repo, env=base)
    return run(["git", "rev-parse", "HEAD"], cwd=repo).strip()


def tampered(repo: Path, sha: str) -> str:
    """A copy of commit `sha` with another message and the same signature: a bad signature."""
    text = run(["git", "cat-file", "commit", sha], cwd=repo)
    head, _, message = text.partition("\n\n")
    forged = f"{head}\n\nnot what was signed {message}"
    out = subprocess.run(["git", "hash-object", "-t", "commit", "-w", "--stdin"], cwd=repo, input=forged,
                         capture_output=True, text=True, check=True, timeout=60)
    return out.stdout.strip()


class GpgHome:
    """A private GNUPGHOME with OpenPGP keys made on demand (ed25519, no passphrase). Short path
    under /tmp (gpg-agent's socket path is limited); `close()` stops its agent and removes it."""

    def __init__(self) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="gpg-", dir="/tmp"))

    def env(self) -> dict[str, str]:
        return {**os.environ, "GNUPGHOME": str(self.home)}

    def key(self, uid: str) -> str:
        """Make a signing key for `uid`; its fingerprint."""
        run(["gpg", "--batch", "--passphrase", "", "--quick-gen-key", uid, "ed25519", "sign", "never"], env=self.env())
        out = run(["gpg", "--batch", "--with-colons", "--list-keys", uid], env=self.env())
        return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))

    def export(self, path: Path, *uids: str, armor: bool = True) -> Path:
        out = subprocess.run(["gpg", "--batch", *(["--armor"] if armor else []), "--export", *uids],
                             env=self.env(), capture_output=True, check=True, timeout=60).stdout
        path.write_bytes(out)
        return path

    def export_secret(self, path: Path, uid: str) -> Path:
        out = subprocess.run(["gpg", "--batch", "--pinentry-mode", "loopback", "--passphrase", "", "--armor",
                              "--export-secret-keys", uid], env=self.env(), capture_output=True, check=True,
                             timeout=60).stdout
        path.write_bytes(out)
        return path

    def close(self) -> None:
        subprocess.run(["gpgconf", "--homedir", str(self.home), "--kill", "all"], capture_output=True, timeout=60)
        shutil.rmtree(self.home, ignore_errors=True)
