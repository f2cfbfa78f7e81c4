"""Commit signatures: only a commit signed by an allowed key applies (`--verify-signatures FILE`).

FILE is one of the two formats git itself verifies against, told apart by content:
- an SSH allowed-signers file (`gpg.ssh.allowedSignersFile`, for `gpg.format=ssh` signatures):
  `principals [options] keytype base64-key [comment]` per line, options `cert-authority`,
  `namespaces="git,..."`, `valid-after=`/`valid-before=`;
- an OpenPGP public keyring (`gpg --export [--armor]`): binary or ASCII-armored.

The file is read and checked once (`SignerKeys.load`); each verification uses exactly those
bytes, in a private temporary directory removed afterwards: git is given the allowed-signers
copy, or a GNUPGHOME (0700, no agent) holding only the keyring. git verifies
(`git verify-commit --raw`, run like every git child: `run_git`, a timeout, no global config)
and its raw verdict is parsed: a commit is accepted only when git says the one signature is
good AND names the allowed signer (for SSH, a principal of the file; for OpenPGP, GOODSIG and
VALIDSIG of a key of the keyring), never on the exit code alone. As git does, the principal
comes from the file's line for the key; it is not compared with the committer's email.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import os
import re
import shutil
import struct
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from agent.errors import AgentError, SignatureError, SignersFileError, SourceError
from agent.source._mirror import GitFailed, run_git

__all__ = ["Signer", "SignerKeys", "verify_commit"]

MAX_SIGNERS_BYTES = 4 << 20  # far above any real keyring or allowed-signers file
VERIFY_TIMEOUT = 30.0

SSH_KEY_TYPES = frozenset({
    "ssh-ed25519", "ssh-rsa", "ssh-dss", "ecdsa-sha2-nistp256", "ecdsa-sha2-nistp384", "ecdsa-sha2-nistp521",
    "sk-ssh-ed25519@openssh.com", "sk-ecdsa-sha2-nistp256@openssh.com",
})
_SSH_OPTIONS = frozenset({"cert-authority", "namespaces", "valid-after", "valid-before"})
_SSH_TIME = re.compile(r"[0-9]{8}([0-9]{4}([0-9]{2})?)?Z?")
_SHA = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_SSH_GOOD = re.compile(r'^Good "git" signature for (?P<principal>.+) with (?P<type>[A-Z0-9-]+) key '
                       r"(?P<key>SHA256:[A-Za-z0-9+/]+)$", re.MULTILINE)
_SSH_UNMATCHED = re.compile(r'^Good "git" signature with (?P<type>[A-Z0-9-]+) key (?P<key>SHA256:[A-Za-z0-9+/]+)$',
                            re.MULTILINE)
_SSH_REFUSALS = ("key has expired", "key is not yet valid", "not permitted for use in signature namespace")
_BEGIN_SSH, _BEGIN_PGP = "-----BEGIN SSH SIGNATURE-----", "-----BEGIN PGP SIGNATURE-----"
_GPG_STATUS = "[GNUPG:] "
_PRIVATE = re.compile(rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY")  # OpenSSH, PEM, PGP PRIVATE KEY BLOCK


@dataclass(frozen=True)
class Signer:
    """Who signed a commit, as verified: the principal (SSH: the name the allowed-signers file
    gives the key; OpenPGP: the key's user id) and the key (SSH: `SHA256:...`; OpenPGP: the
    primary key's fingerprint)."""

    kind: str  # "ssh" or "openpgp"
    principal: str
    key: str

    def __str__(self) -> str:
        return f"{self.principal} (key {self.key})" if self.principal else f"key {self.key}"


@dataclass(frozen=True)
class AllowedKey:
    """One key of the signers file: its principals (SSH) or user id (OpenPGP), its fingerprint."""

    principals: str
    key: str


@dataclass(frozen=True)
class SignerKeys:
    """A signers file, read and checked: its kind ("ssh" or "openpgp"), its exact bytes (what
    every verification uses) and the keys it allows."""

    path: Path
    kind: str
    content: bytes
    keys: tuple[AllowedKey, ...]

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content).hexdigest()

    @property
    def description(self) -> str:
        what = "an SSH allowed-signers file" if self.kind == "ssh" else "an OpenPGP public keyring"
        return f"{self.path} ({what}, {len(self.keys)} key(s))"

    @classmethod
    def load(cls, path: str | Path) -> SignerKeys:
        """Read and check FILE; a SignersFileError naming it (never quoting it) otherwise."""
        path = Path(path)
        return cls.parse(path, _read(path))

    @classmethod
    def parse(cls, path: Path, content: bytes) -> SignerKeys:
        if len(content) > MAX_SIGNERS_BYTES:
            raise SignersFileError(f"the signers file {path} is over {MAX_SIGNERS_BYTES >> 20} MiB")
        if not content.strip():
            raise SignersFileError(f"the signers file {path} is empty")
        head = content.lstrip()
        if head.startswith(b"-----BEGIN PGP PUBLIC KEY BLOCK-----") or _openpgp_packet(content[0]) == 6:
            return cls(path, "openpgp", content, _openpgp_keys(path, content))
        if _PRIVATE.search(content) or _openpgp_packet(content[0]) == 5:
            raise SignersFileError(f"the signers file {path} holds a private key: give the public keys only "
                                   "(an allowed-signers file, or `gpg --export`)")
        if head.startswith(b"-----BEGIN PGP"):
            raise SignersFileError(f"the signers file {path} is OpenPGP data but no public keyring "
                                   "(make one with `gpg --export --armor KEY...`)")
        return cls(path, "ssh", content, _ssh_keys(path, content))

    def reload(self) -> SignerKeys:
        """The file as it is now: self when its bytes are unchanged (a Secret mounted as a file is
        updated in place), a newly checked SignerKeys otherwise. Unchanged bytes are not parsed
        again (an OpenPGP keyring's check runs gpg)."""
        content = _read(self.path)
        return self if content == self.content else SignerKeys.parse(self.path, content)


def _read(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(MAX_SIGNERS_BYTES + 1)
    except OSError as exc:
        raise SignersFileError(f"cannot read the signers file {path}: {exc.strerror or type(exc).__name__}") from None


def verify_commit(repo_dir: str | Path, sha: str, keys_file: SignerKeys | str | Path, *,
                  timeout: float = VERIFY_TIMEOUT) -> Signer:
    """The signer of commit `sha` of the repository at `repo_dir` (its git directory, or a work
    tree) when the signers file allows it; SignatureError (unsigned, not allowed, bad signature)
    otherwise; SignersFileError when the file is unusable; AgentError when git cannot tell."""
    keys = keys_file if isinstance(keys_file, SignerKeys) else SignerKeys.load(keys_file)
    if not _SHA.fullmatch(sha):
        raise SourceError(f"not a full commit id: {sha!r}")
    git_dir = _git_dir(Path(repo_dir))
    short = sha[:12]
    signature = _signature_of(git_dir, sha, timeout)
    if signature is None:
        raise SignatureError(f"commit {short} is not signed", commit=sha, signer="unsigned", reason="unsigned")
    kind = "ssh" if signature.startswith(_BEGIN_SSH) else "openpgp" if signature.startswith(_BEGIN_PGP) else ""
    if not kind:
        raise SignatureError(f"commit {short} carries a signature of a kind --verify-signatures does not check "
                             "(only SSH and OpenPGP signatures are)", commit=sha, signer="unknown", reason="not-allowed")
    if kind != keys.kind:
        key = f"SSH key {_sshsig_fingerprint(signature)}" if kind == "ssh" else "an OpenPGP key"
        raise SignatureError(f"commit {short} is signed by {key}, which is not allowed by {keys.description}",
                             commit=sha, signer=key, reason="not-allowed")
    with _private_dir() as tmp:
        if kind == "ssh":
            allowed = tmp / "allowed_signers"
            allowed.write_bytes(keys.content)
            raw, ok = _git_verify(git_dir, sha, ["-c", f"gpg.ssh.allowedSignersFile={allowed}",
                                                 "-c", "gpg.ssh.program=ssh-keygen"], {}, timeout)
            return _ssh_verdict(sha, raw.replace(str(allowed), str(keys.path)), ok, keys, signature)
        (tmp / "gpg.conf").write_text("no-autostart\n", encoding="utf-8")  # no agent left behind
        (tmp / "keyring").write_bytes(keys.content)
        home = {"GNUPGHOME": str(tmp)}
        try:
            run_git(["gpg", "--batch", "--quiet", "--import", str(tmp / "keyring")], env=_env(home), timeout=timeout)
        except (GitFailed, OSError) as exc:
            raise SignersFileError(f"the signers file {keys.path}: gpg cannot import it: {_last_line(exc)}") from None
        raw, ok = _git_verify(git_dir, sha, ["-c", "gpg.program=gpg", "-c", "gpg.minTrustLevel=undefined"], home, timeout)
        return _openpgp_verdict(sha, raw, ok, keys)


# --- reading the signature ---------------------------------------------------------------------
def _git_dir(repo: Path) -> Path:
    """The git directory: given explicitly to git (--git-dir), so no repository discovery (and
    no ownership check of a mounted work tree) happens."""
    dot = repo / ".git"
    return dot if os.path.lexists(dot) else repo


def _signature_of(git_dir: Path, sha: str, timeout: float) -> str | None:
    """The commit's signature header (gpgsig, or gpgsig-sha256 of a SHA-256 repository), or None."""
    text = _git(["git", "--git-dir", str(git_dir), "cat-file", "commit", sha], {}, timeout, f"reading commit {sha[:12]}")
    lines = text.partition("\n\n")[0].split("\n")
    for i, line in enumerate(lines):
        name, _, value = line.partition(" ")
        if name in ("gpgsig", "gpgsig-sha256"):
            block = [value]
            for more in lines[i + 1:]:
                if not more.startswith(" "):
                    break
                block.append(more[1:])
            return "\n".join(block).strip() + "\n"
    return None


def _sshsig_fingerprint(armored: str) -> str:
    """SHA256:... of the public key inside an SSH signature (for messages), or "unknown"."""
    body = "".join(line.strip() for line in armored.splitlines() if line.strip() and not line.startswith("-----"))
    try:
        blob = base64.b64decode(body, validate=True)
        if not blob.startswith(b"SSHSIG"):
            return "unknown"
        (length,) = struct.unpack(">I", blob[10:14])
        key = blob[14:14 + length]
        if len(key) != length or not key:
            return "unknown"
    except (binascii.Error, struct.error, ValueError):
        return "unknown"
    return _fingerprint(key)


def _fingerprint(blob: bytes) -> str:
    return "SHA256:" + base64.b64encode(hashlib.sha256(blob).digest()).decode().rstrip("=")


# --- running git -------------------------------------------------------------------------------
def _env(extra: dict[str, str]) -> dict[str, str]:
    """Hermetic: no inherited GIT_* variables, no system or global git config, no prompt."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GIT_", "GNUPGHOME"))}
    env.update({"LC_ALL": "C", "GIT_TERMINAL_PROMPT": "0", "GIT_CONFIG_NOSYSTEM": "1", "GIT_CONFIG_GLOBAL": os.devnull})
    env.update(extra)
    return env


def _git(argv: list[str], extra: dict[str, str], timeout: float, what: str) -> str:
    try:
        return run_git(argv, env=_env(extra), timeout=timeout)
    except GitFailed as exc:
        if exc.timed_out:
            raise AgentError(f"{what} timed out after {timeout:g} s") from None
        raise SourceError(f"{what}: {_last_line(exc)}") from None
    except OSError as exc:
        raise AgentError(f"{what}: cannot run {argv[0]}: {exc.strerror or type(exc).__name__}") from None


def _git_verify(git_dir: Path, sha: str, config: list[str], extra: dict[str, str],
                timeout: float) -> tuple[str, bool]:
    """`git verify-commit --raw`: its raw verdict (stderr) and whether it exited 0."""
    sink: list[str] = []
    argv = ["git", "--git-dir", str(git_dir), *config, "verify-commit", "--raw", sha]
    try:
        run_git(argv, env=_env(extra), timeout=timeout, stderr_sink=sink)
        ok = True
    except GitFailed as exc:
        if exc.timed_out:
            raise AgentError(f"verifying the signature of commit {sha[:12]} timed out after {timeout:g} s") from None
        ok = False
    except OSError as exc:
        raise AgentError(f"verifying commit {sha[:12]}: cannot run git: {exc.strerror or type(exc).__name__}") from None
    return "".join(sink), ok


@contextmanager
def _private_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="modelops-verify-"))  # mode 0700
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _last_line(exc: BaseException) -> str:
    text = exc.stderr if isinstance(exc, GitFailed) else getattr(exc, "strerror", None) or str(exc)
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    return _printable(lines[-1]) if lines else "no error message"


def _printable(text: str, limit: int = 300) -> str:
    return "".join(c if c.isprintable() else "?" for c in text)[:limit]


# --- the verdicts ------------------------------------------------------------------------------
def _ssh_verdict(sha: str, raw: str, ok: bool, keys: SignerKeys, signature: str) -> Signer:
    short = sha[:12]
    good = _SSH_GOOD.findall(raw)
    refused = "No principal matched" in raw or any(r in raw for r in _SSH_REFUSALS)
    if ok and len(good) == 1 and not refused and "incorrect signature" not in raw:
        principal, _type, key = good[0]
        return Signer("ssh", _printable(principal), key)
    unmatched = _SSH_UNMATCHED.search(raw)
    key = unmatched.group("key") if unmatched else good[0][2] if good else _sshsig_fingerprint(signature)
    if "incorrect signature" in raw:
        raise SignatureError(f"commit {short} has a bad signature (SSH key {key}): the commit does not match what "
                             "was signed", commit=sha, signer=f"key {key}", reason="bad-signature")
    listed = [k for k in keys.keys if k.key == key]
    principal = f" (principal {listed[0].principals})" if listed else ""
    why = next((_printable(line.strip()) for line in raw.splitlines() if any(r in line for r in _SSH_REFUSALS)), "")
    raise SignatureError(f"commit {short} is signed by key {key}{principal}, which is not allowed by "
                         f"{keys.description}" + (f": {why}" if why else ""),
                         commit=sha, signer=f"key {key}{principal}", reason="not-allowed")


def _openpgp_verdict(sha: str, raw: str, ok: bool, keys: SignerKeys) -> Signer:
    short = sha[:12]
    status: dict[str, list[list[str]]] = {}
    for line in raw.splitlines():
        if line.startswith(_GPG_STATUS):
            word, *fields = line[len(_GPG_STATUS):].split(" ")
            status.setdefault(word, []).append(fields)
    allowed = {k.key: k for k in keys.keys}
    good, valid = status.get("GOODSIG", []), status.get("VALIDSIG", [])
    trouble = [w for w in ("BADSIG", "ERRSIG", "EXPSIG", "EXPKEYSIG", "REVKEYSIG", "NO_PUBKEY") if w in status]
    if ok and len(status.get("NEWSIG", [])) <= 1 and len(good) == 1 and len(valid) == 1 and not trouble:
        primary = valid[0][-1] if len(valid[0]) >= 10 else valid[0][0]
        if primary in allowed:
            return Signer("openpgp", _printable(" ".join(good[0][1:])), primary)
    if "BADSIG" in status:
        fields = status["BADSIG"][0]
        raise SignatureError(f"commit {short} has a bad signature (OpenPGP key {_printable(fields[0])}): the commit "
                             "does not match what was signed", commit=sha, signer=f"key {_printable(fields[0])}",
                             reason="bad-signature")
    for word, what in (("EXPKEYSIG", "has expired"), ("REVKEYSIG", "is revoked"), ("EXPSIG", "made a signature that has expired")):
        if word in status:
            fields = status[word][0]
            who = _printable(" ".join(fields[1:])) or "?"
            raise SignatureError(f"commit {short} is signed by OpenPGP key {_printable(fields[0])} ({who}), which "
                                 f"{what}", commit=sha, signer=f"key {_printable(fields[0])} ({who})", reason="not-allowed")
    if "ERRSIG" in status:
        fields = status["ERRSIG"][0]
        key = _printable(fields[6] if len(fields) >= 7 and fields[6] != "-" else fields[0])
        if "NO_PUBKEY" in status:
            raise SignatureError(f"commit {short} is signed by OpenPGP key {key}, which is not allowed by "
                                 f"{keys.description}", commit=sha, signer=f"key {key}", reason="not-allowed")
        raise SignatureError(f"commit {short}: its signature (OpenPGP key {key}) cannot be checked",
                             commit=sha, signer=f"key {key}", reason="bad-signature")
    said = next((line for line in reversed(raw.splitlines()) if line.strip() and not line.startswith(_GPG_STATUS)), "")
    raise SignatureError(f"commit {short}: its OpenPGP signature was not verified"
                         + (f": {_printable(said.strip())}" if said else ""),
                         commit=sha, signer="unknown", reason="bad-signature")


# --- reading the signers file ------------------------------------------------------------------
def _openpgp_packet(first: int) -> int | None:
    """The tag of the OpenPGP packet starting with byte `first` (None: not a packet header)."""
    if not first & 0x80:
        return None
    return first & 0x3F if first & 0x40 else (first >> 2) & 0x0F


def _openpgp_keys(path: Path, content: bytes) -> tuple[AllowedKey, ...]:
    """The primary keys of a keyring, as gpg reads it (`--import-options show-only`: nothing kept)."""
    if shutil.which("gpg") is None:
        raise SignersFileError(f"the signers file {path} is an OpenPGP keyring, and checking OpenPGP signatures "
                               "needs gpg, which is not installed")
    with _private_dir() as tmp:
        (tmp / "gpg.conf").write_text("no-autostart\n", encoding="utf-8")
        (tmp / "keyring").write_bytes(content)
        try:
            out = run_git(["gpg", "--batch", "--with-colons", "--import-options", "show-only", "--import",
                           str(tmp / "keyring")], env=_env({"GNUPGHOME": str(tmp)}), timeout=VERIFY_TIMEOUT)
        except GitFailed as exc:
            raise SignersFileError(f"the signers file {path} is not a usable OpenPGP keyring: {_last_line(exc)}") from None
        except OSError as exc:
            raise SignersFileError(f"the signers file {path}: cannot run gpg: {exc.strerror or exc}") from None
    keys: list[AllowedKey] = []
    expect_fpr = False
    for line in out.splitlines():
        record = line.split(":")
        if record[0] in ("sec", "ssb"):
            raise SignersFileError(f"the signers file {path} holds a private key: give the public keys only "
                                   "(`gpg --export`)")
        if record[0] == "pub":
            expect_fpr = True
        elif record[0] == "fpr" and expect_fpr and len(record) > 9:
            keys.append(AllowedKey(principals="", key=record[9]))
            expect_fpr = False
        elif record[0] == "uid" and keys and not keys[-1].principals and len(record) > 9:
            keys[-1] = AllowedKey(principals=_printable(record[9]), key=keys[-1].key)
    if not keys:
        raise SignersFileError(f"the signers file {path} holds no OpenPGP public key")
    return tuple(keys)


def _ssh_keys(path: Path, content: bytes) -> tuple[AllowedKey, ...]:
    """The keys of an allowed-signers file; a SignersFileError naming FILE:LINE (never the
    line's text) for the first line that is not `principals [options] keytype base64-key`."""
    try:
        text = content.decode("utf-8")
    except UnicodeDecodeError:
        raise SignersFileError(f"the signers file {path} is neither an SSH allowed-signers file nor an OpenPGP "
                               "public keyring") from None
    keys: list[AllowedKey] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            keys.append(_ssh_line(line))
        except ValueError as exc:
            kind = "" if keys else (" (neither an SSH allowed-signers file nor an OpenPGP public keyring?)")
            raise SignersFileError(f"{path}:{number}: {exc}{kind}") from None
    if not keys:
        raise SignersFileError(f"the signers file {path} holds no key (only comments)")
    if shutil.which("ssh-keygen") is None:
        raise SignersFileError(f"the signers file {path} is an SSH allowed-signers file, and checking SSH "
                               "signatures needs ssh-keygen (openssh-client), which is not installed")
    return tuple(keys)


def _ssh_line(line: str) -> AllowedKey:
    principals, rest = _next_word(line)
    principals = principals.strip('"')
    if not principals or not rest:
        raise ValueError("expected: principals [options] keytype base64-key [comment]")
    options = ""
    keytype, rest = _next_word(rest)
    if keytype not in SSH_KEY_TYPES:
        options = keytype
        keytype, rest = _next_word(rest)
        if keytype not in SSH_KEY_TYPES:
            raise ValueError(f"no known key type (one of {', '.join(sorted(SSH_KEY_TYPES))})")
    encoded, _comment = _next_word(rest)
    if not encoded:
        raise ValueError("no key after the key type")
    try:
        blob = base64.b64decode(encoded, validate=True)
        (length,) = struct.unpack(">I", blob[:4])
    except (binascii.Error, struct.error, ValueError):
        raise ValueError("the key is not valid base64 of an SSH public key") from None
    if blob[4:4 + length] != keytype.encode():
        raise ValueError(f"the key is not of the type {keytype} its line names")
    for option in _split_quoted(options, ",") if options else []:
        name, eq, value = option.partition("=")
        name = name.lower()
        if name not in _SSH_OPTIONS:
            raise ValueError(f"unknown option {_printable(name, 40)!r} (known: {', '.join(sorted(_SSH_OPTIONS))})")
        if (name == "cert-authority") == bool(eq):
            raise ValueError(f"option {name} " + ("takes no value" if eq else "needs a value"))
        value = value.strip('"')
        if name in ("valid-after", "valid-before") and not _SSH_TIME.fullmatch(value):
            raise ValueError(f"option {name}: not a time YYYYMMDD[HHMM[SS]][Z]")
    return AllowedKey(principals=_printable(principals, 200), key=_fingerprint(blob))


def _next_word(text: str) -> tuple[str, str]:
    """The first word of `text` (spaces inside double quotes belong to it) and the rest."""
    text = text.lstrip(" \t")
    quoted = False
    for i, c in enumerate(text):
        if c == '"':
            quoted = not quoted
        elif c in " \t" and not quoted:
            return text[:i], text[i:].lstrip(" \t")
    if quoted:
        raise ValueError("an unterminated quote")
    return text, ""


def _split_quoted(text: str, separators: str) -> list[str]:
    """`text` split at `separators` outside double quotes (as ssh-keygen reads these files)."""
    out: list[str] = []
    word, quoted = "", False
    for c in text:
        if c == '"':
            quoted = not quoted
        if c in separators and not quoted:
            if word:
                out.append(word)
            word = ""
        else:
            word += c
    if quoted:
        raise ValueError("an unterminated quote")
    if word:
        out.append(word)
    return out
