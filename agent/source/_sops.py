"""SOPS-encrypted YAML files (what `sops` writes for age recipients), decrypted in memory at the
source edge, as Flux's kustomize-controller does in-process.

A manifest file whose first YAML document has a top-level `sops:` mapping is a SOPS file. Its
data key is opened with an age identity (agent.source._sops_keys), every value SOPS encrypted
(`ENC[AES256_GCM,data:...,iv:...,tag:...,type:...]`, the additional data being the value's path
of mapping keys joined by ":" plus a trailing ":") is decrypted with AES-256-GCM, and the MAC
is verified: SHA-512 over the values in document order (only the encrypted ones with
`mac_only_encrypted`), stored encrypted with the data key and `lastmodified` as additional data.
A file whose MAC does not match is refused. Which values are encrypted follows the file's
`unencrypted_suffix` (default `_unencrypted`), `encrypted_suffix`, `unencrypted_regex` or
`encrypted_regex`; the comment rules (`*_comment_regex`) and Shamir key groups are refused, and
so are encrypted values outside v1 Secrets (the agent prints any other kind's values in plans).

The decrypted file is the encrypted text with each encrypted value replaced in place (one line
each, so line numbers stay those of the file in Git) and the `sops` key removed: the loader
reads it like any other file. Comments sops encrypted stay as they are (encrypted comments).
Nothing decrypted is written anywhere; a snapshot carries `Sealed` so the caller keeps it off
disk caches and out of messages. `.sops.yaml` (sops's own configuration) is not a manifest.
"""

from __future__ import annotations

import base64
import binascii
import dataclasses
import hashlib
import hmac
import re
from collections.abc import Callable
from typing import Any, Literal

import yaml
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from agent.errors import SpecError
from agent.source._age import AgeError
from agent.source._age import decrypt as age_decrypt
from agent.source._base import Sealed, Snapshot
from agent.source._sops_keys import IdentityError, KeyRing
from agent.source._sops_values import SopsError, Where, go_value, rfc3339, shown, to_bytes, typed

SOPS_CONFIG = ".sops.yaml"
_ENC = re.compile(r"ENC\[AES256_GCM,data:([A-Za-z0-9+/]+=*),iv:([A-Za-z0-9+/]+=*),tag:([A-Za-z0-9+/]+=*),type:(\w+)\]")
_KINDS = frozenset({"str", "int", "float", "bool", "time", "comment"})  # "bytes" is the binary store's only
_MAC_ONLY_ENCRYPTED_INIT = hashlib.sha256(b"sops").digest()  # sops.MACOnlyEncryptedInitialization
_RULES = ("unencrypted_suffix", "encrypted_suffix", "unencrypted_regex", "encrypted_regex",
          "unencrypted_comment_regex", "encrypted_comment_regex")
_OTHER_KEYS = ("pgp", "kms", "gcp_kms", "azure_kv", "hc_vault", "hckms")
_NESTED_QUANTIFIER = re.compile(r"\([^()]*[*+}][^()]*\)[*+{]")
_RECIPIENT = re.compile(r"age1[0-9a-z]{20,200}")
_Leaf = tuple[yaml.ScalarNode, tuple[str, ...], bool]  # a scalar, its path of keys, whether a sequence item

def decrypt_snapshot(snapshot: Snapshot, *, keyless: Literal["error", "skip"] = "error",
                     keys: KeyRing | None = None) -> Snapshot:
    """The snapshot with its SOPS files decrypted in memory and `.sops.yaml` left out.

    A file that cannot be decrypted (no identity, a wrong key, damaged, a MAC mismatch) is left
    out too, with a problem naming it: the loader then refuses the revision and nothing is
    applied. `keyless="skip"`: when no identity is given at all, the SOPS files are left out
    without a problem (`sealed.skipped`): for commands that read but never apply."""
    ring = keys if keys is not None else KeyRing.from_environment()
    skip = keyless == "skip" and not ring.configured()
    files: dict[str, bytes] = {}
    problems = list(snapshot.problems)
    paths: set[str] = set()
    values: set[str] = set()
    for path, content in snapshot.files.items():
        if path.rsplit("/", 1)[-1] == SOPS_CONFIG:
            continue
        if skip:
            if is_sops(content):
                paths.add(path)
            else:
                files[path] = content
            continue
        try:
            opened = open_sops(content, ring)
        except SopsError as exc:
            problems.append(SpecError(path, exc.line, exc.field, exc.message))
            paths.add(path)
            continue
        if opened is None:
            files[path] = content
            continue
        files[path], found = opened
        paths.add(path)
        values.update(found)
    if not paths:
        return snapshot if len(files) == len(snapshot.files) else dataclasses.replace(snapshot, files=files)
    sealed = Sealed(frozenset(paths), skip, frozenset(values))
    return dataclasses.replace(snapshot, files=files, problems=sorted(problems), sealed=sealed)


def _documents(content: bytes, loader: type[Any]) -> list[yaml.Node | None] | None:
    """The documents' node trees; None when `content` is not a SOPS file (no top-level `sops`
    key), or not YAML at all (the loader reports that)."""
    if b"sops" not in content:
        return None
    try:
        documents: list[yaml.Node | None] = list(yaml.compose_all(content.decode("utf-8"), Loader=loader))
    except (UnicodeDecodeError, yaml.YAMLError):
        return None
    return documents if any(_top_key(d, "sops") for d in documents) else None


def is_sops(content: bytes) -> bool:
    return _documents(content, getattr(yaml, "CSafeLoader", yaml.SafeLoader)) is not None


def _top_key(node: yaml.Node | None, name: str) -> tuple[yaml.Node, yaml.Node] | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == name:
                return k, v
    return None


def open_sops(content: bytes, ring: KeyRing) -> tuple[bytes, set[str]] | None:
    """(the decrypted file, its decrypted values as a message could show them) of a SOPS file;
    None when `content` is not one. Raises SopsError naming the line and field at fault."""
    if not is_sops(content):  # the C parser first: most files are not SOPS files
        return None
    text = content.decode("utf-8")
    documents = _documents(content, yaml.SafeLoader)  # its marks index characters (the C parser's: bytes)
    assert documents is not None
    first = _top_key(documents[0], "sops") if documents else None
    if first is None:
        raise SopsError("the sops metadata must be in the first YAML document")
    if not isinstance(first[1], yaml.MappingNode):
        raise SopsError("the sops metadata is not a mapping", _line(first[0]), "sops")
    meta = _plain(first[1])
    at_meta = Where(_line(first[0]), "sops")
    should_encrypt = _rule(meta, at_meta)
    edits: list[tuple[int, int, str]] = []
    leaves: list[_Leaf] = []
    owners: list[int] = []  # the document of each leaf
    seen: set[int] = set()
    for index, doc in enumerate(documents):
        owners.extend([index - 1] * (len(leaves) - len(owners)))
        if doc is None or (isinstance(doc, yaml.ScalarNode) and doc.tag.endswith(":null")):
            continue
        if not isinstance(doc, yaml.MappingNode):
            raise SopsError("a document of a SOPS file must be a mapping", _line(doc))
        for k, v in doc.value:
            if isinstance(k, yaml.ScalarNode) and k.value == "sops":  # every document carries it
                removed = text[k.start_mark.index:v.end_mark.index]
                edits.append((k.start_mark.index, v.end_mark.index, "\n" * removed.count("\n")))
            else:
                _walk(k, v, (), leaves, seen)
    owners.extend([len(documents) - 1] * (len(leaves) - len(owners)))
    key = _data_key(meta, ring)
    digest = hashlib.sha512()
    mac_all = meta.get("mac_only_encrypted") not in ("true", "True", "TRUE")
    if not mac_all:
        digest.update(_MAC_ONLY_ENCRYPTED_INIT)
    found: set[str] = set()
    holding: set[int] = set()  # documents with encrypted values (comments aside)
    for (node, path, in_sequence), owner in zip(leaves, owners, strict=True):
        where = Where(_line(node), ".".join(path))
        value = go_value(node, where)
        if not should_encrypt(path):
            if mac_all and value is not None:
                digest.update(to_bytes(value))
            continue
        if value is None or value == "":
            continue  # sops leaves null and "" as they are
        match = _ENC.fullmatch(value) if isinstance(value, str) else None
        if match is None:
            raise where.error("not a SOPS-encrypted value (ENC[AES256_GCM,...]), though the file's rules encrypt it")
        if match.group(4) not in _KINDS:
            raise where.error(f"unsupported SOPS value type {match.group(4)!r}")
        plaintext = _aes(key, match, ":".join(path) + ":")
        if plaintext is None:
            raise where.error("the encrypted value does not decrypt with the file's data key (damaged, or moved "
                              "from another place in the file)")
        mac_bytes, replacement = typed(match.group(4), plaintext, where)
        found.update(shown(plaintext.decode("utf-8", "replace")))
        if mac_bytes is not None:
            digest.update(mac_bytes)
            holding.add(owner)
        edits.append(_replace(text, node, replacement, in_sequence, where))
    _check_mac(meta, key, digest.hexdigest().upper(), at_meta)
    out, last = [], 0
    for start, end, new in sorted(edits):
        out.append(text[last:start])
        out.append(new)
        last = end
    out.append(text[last:])
    decrypted = "".join(out)
    _secrets_only(decrypted, documents, holding)
    return decrypted.encode("utf-8"), found


def _secrets_only(decrypted: str, documents: list[yaml.Node | None], holding: set[int]) -> None:
    """Encrypted values belong in v1 Secrets, the one kind whose values the agent keeps out of
    every plan, diff and render; in another kind they would be printed (a PR comment, say)."""
    try:
        loaded = list(yaml.load_all(decrypted, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
    except yaml.YAMLError:
        raise SopsError("the decrypted file is not valid YAML") from None
    for index in sorted(holding):
        doc = loaded[index] if index < len(loaded) else None
        if not (isinstance(doc, dict) and doc.get("apiVersion") == "v1" and doc.get("kind") == "Secret"):
            node = documents[index]
            raise SopsError("SOPS-encrypted values are accepted in v1 Secrets only (the values of any other "
                            "kind show in plans and diffs): encrypt only the Secrets' data, e.g. with "
                            "encrypted_regex: ^(data|stringData)$", _line(node) if node is not None else 1)


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


def _plain(node: yaml.Node) -> Any:
    """Metadata as strings, lists and dicts (scalars as written)."""
    if isinstance(node, yaml.MappingNode):
        return {str(k.value): _plain(v) for k, v in node.value if isinstance(k, yaml.ScalarNode)}
    if isinstance(node, yaml.SequenceNode):
        return [_plain(v) for v in node.value]
    return str(node.value)


def _walk(key: yaml.Node, node: yaml.Node, path: tuple[str, ...], leaves: list[_Leaf], seen: set[int]) -> None:
    if not isinstance(key, yaml.ScalarNode) or key.tag == "tag:yaml.org,2002:merge":
        raise SopsError("mapping keys of a SOPS file must be plain strings", _line(key), ".".join(path))
    _visit(node, (*path, str(key.value)), leaves, seen, False)


def _visit(node: yaml.Node, path: tuple[str, ...], leaves: list[_Leaf], seen: set[int], in_sequence: bool) -> None:
    """The scalars under `node` in document order; sops's path holds mapping keys only."""
    if id(node) in seen:
        raise SopsError("YAML aliases (*name) are not allowed in a SOPS file", _line(node), ".".join(path))
    seen.add(id(node))
    if isinstance(node, yaml.MappingNode):
        names: set[str] = set()
        for k, v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value in names:
                raise SopsError(f"duplicate key {k.value!r}", _line(k), ".".join(path))
            names.add(str(k.value))
            _walk(k, v, path, leaves, seen)
    elif isinstance(node, yaml.SequenceNode):
        for item in node.value:
            _visit(item, path, leaves, seen, True)
    elif isinstance(node, yaml.ScalarNode):
        leaves.append((node, path, in_sequence))


def _rule(meta: dict[str, Any], where: Where) -> Callable[[tuple[str, ...]], bool]:
    """sops's shouldBeEncrypted for the file's one encryption rule, on a value's path of keys."""
    rules = {name: meta[name] for name in _RULES if isinstance(meta.get(name), str) and meta[name]}
    if len(rules) > 1:
        raise where.error(f"the sops metadata sets more than one of {', '.join(_RULES)}")
    name, value = next(iter(rules.items()), ("unencrypted_suffix", "_unencrypted"))
    if name.endswith("comment_regex"):
        raise where.error(f"sops.{name} is not supported by the agent: encrypt the file without it")
    if name.endswith("suffix"):
        def hit(key: str) -> bool:
            return key.endswith(value)
    else:
        if len(value) > 1000 or _NESTED_QUANTIFIER.search(value):
            raise where.error(f"sops.{name} is too complex for the agent (nested quantifiers, or over 1000 characters)")
        try:
            pattern = re.compile(value)
        except re.error:
            raise where.error(f"sops.{name} is not a valid regular expression") from None

        def hit(key: str) -> bool:
            return pattern.search(key) is not None
    if name.startswith("un"):
        return lambda path: not any(hit(k) for k in path)
    return lambda path: any(hit(k) for k in path)


def _data_key(meta: dict[str, Any], ring: KeyRing) -> bytes:
    """The file's data key, opened with the first identity that is one of its age recipients."""
    entries = [e for e in meta["age"] if isinstance(e, dict)] if isinstance(meta.get("age"), list) else []
    if not entries:
        if meta.get("key_groups"):
            raise SopsError("encrypted with SOPS key groups (Shamir secret sharing), which the agent does not open")
        others = [name for name in _OTHER_KEYS if meta.get(name)]
        raise SopsError(f"encrypted with SOPS for {', '.join(others) or 'no'} keys only; the agent opens files "
                        "encrypted for age recipients")
    recipients = [str(e.get("recipient", "")) for e in entries]
    named = [r if _RECIPIENT.fullmatch(r) else "(a malformed recipient)" for r in recipients]
    shown_as = f"age recipient{'s' if len(named) > 1 else ''} {', '.join(named)}"
    if not ring.configured():
        raise SopsError(f"encrypted with SOPS for {shown_as}; no age identity given (--sops-age-key-file FILE, or "
                        "SOPS_AGE_KEY_FILE or SOPS_AGE_KEY)")
    try:
        identities = ring.identities()
    except IdentityError as exc:
        raise SopsError(f"encrypted with SOPS for {shown_as}; {exc}") from None
    for entry, name in zip(entries, named, strict=True):
        try:
            key = age_decrypt(str(entry.get("enc", "")), identities)
        except AgeError as exc:
            raise SopsError(f"the data key encrypted for {name} is damaged ({exc})") from None
        if key is not None:
            if len(key) != 32:
                raise SopsError("the SOPS data key is not 32 bytes long")
            return key
    raise SopsError(f"encrypted with SOPS for {shown_as}; no matching identity in {ring.described()}")


def _aes(key: bytes, match: re.Match[str], aad: str) -> bytes | None:
    """AES-256-GCM as sops uses it; None when the value does not authenticate (or is malformed)."""
    try:
        data, iv, tag = (base64.b64decode(match.group(i), validate=True) for i in (1, 2, 3))
        if len(tag) != 16 or not 8 <= len(iv) <= 128:
            return None
        return AESGCM(key).decrypt(iv, data + tag, aad.encode("utf-8"))
    except (binascii.Error, ValueError, InvalidTag):
        return None


def _check_mac(meta: dict[str, Any], key: bytes, computed: str, where: Where) -> None:
    match = _ENC.fullmatch(str(meta.get("mac", "")))
    stamp = rfc3339(str(meta.get("lastmodified", "")))
    if match is None or stamp is None:
        raise where.error("the file has no valid MAC (sops.mac, sops.lastmodified)")
    stored = _aes(key, match, stamp)
    if stored is None or match.group(4) != "str":
        raise where.error("the MAC does not decrypt: sops.mac or sops.lastmodified was changed")
    if not hmac.compare_digest(stored, computed.encode("ascii")):
        raise where.error("the MAC does not match the values: the file was changed after sops encrypted it")


def _replace(text: str, node: yaml.Node, replacement: str | None, in_sequence: bool, where: Where) -> tuple[int, int, str]:
    start, end = node.start_mark.index, node.end_mark.index
    if replacement is not None:
        return start, end, replacement
    # a comment sops keeps as a sequence item (`- ENC[...,type:comment]`): the item goes
    line_start = text.rfind("\n", 0, start) + 1
    if in_sequence and re.fullmatch(r"[ \t]*-[ \t]+", text[line_start:start]):
        return line_start + text[line_start:start].index("-"), end, ""
    raise where.error("an encrypted comment where a value belongs")
