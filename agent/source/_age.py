"""age v1 (age-encryption.org/v1), the part SOPS needs: X25519 identities and decrypting a small
armored file (a SOPS data key) in memory.

Identities are the `AGE-SECRET-KEY-1...` lines `age-keygen` writes (Bech32). A file is a header
of recipient stanzas, closed by an HMAC-SHA256 over the header, and a ChaCha20-Poly1305 STREAM
payload; the X25519 stanza wraps the 16-byte file key with a key derived by HKDF-SHA256 from an
ephemeral key agreement. Errors never carry key material: no identity, stanza body or plaintext
is ever part of a message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GENERATOR = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)
_INTRO = b"age-encryption.org/v1\n"
_X25519_LABEL = b"age-encryption.org/v1/X25519"
_ARMOR_BEGIN = "-----BEGIN AGE ENCRYPTED FILE-----"
_ARMOR_END = "-----END AGE ENCRYPTED FILE-----"
_COLUMNS = 64  # base64 columns per line, in the header and in the armor
_CHUNK = 64 * 1024
_MAX_FILE = 1 << 20  # an armored SOPS data key is ~400 bytes


class AgeError(Exception):
    """A malformed identity or file, or a file no identity opens (the message holds no secret)."""


def _polymod(values: Sequence[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            if (top >> i) & 1:
                chk ^= _GENERATOR[i]
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    h = hrp.lower().encode()
    return [c >> 5 for c in h] + [0] + [c & 31 for c in h]


def _convert(data: Sequence[int], frombits: int, tobits: int, pad: bool) -> bytes:
    acc = bits = 0
    out = bytearray()
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or (acc << (tobits - bits)) & maxv:
        raise AgeError("invalid Bech32 padding")
    return bytes(out)


def bech32_decode(s: str) -> tuple[str, bytes]:
    """(human-readable part as written, data) of a Bech32 string, as age reads it (no length limit)."""
    if s.lower() != s and s.upper() != s:
        raise AgeError("mixed case")
    pos = s.rfind("1")
    if pos < 1 or pos + 7 > len(s):
        raise AgeError("no separator")
    hrp = s[:pos]
    if any(not 33 <= ord(c) <= 126 for c in hrp):
        raise AgeError("invalid character")
    values = [_CHARSET.find(c) for c in s[pos + 1:].lower()]
    if -1 in values:
        raise AgeError("invalid character")
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise AgeError("invalid checksum")
    return hrp, _convert(values[:-6], 5, 8, pad=False)


def bech32_encode(hrp: str, data: bytes) -> str:
    values = list(_convert(data, 8, 5, pad=True))
    mod = _polymod([*_hrp_expand(hrp), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(mod >> 5 * (5 - i)) & 31 for i in range(6)]
    out = hrp.lower() + "1" + "".join(_CHARSET[v] for v in values + checksum)
    return out if hrp.lower() == hrp else out.upper()


@dataclass(frozen=True)
class Identity:
    """An age X25519 identity; `recipient` is its public `age1...` string. The secret never
    shows in a repr."""

    secret: bytes = field(repr=False)
    public: bytes
    recipient: str


def parse_identity(line: str) -> Identity:
    """An `AGE-SECRET-KEY-1...` line. The error never repeats the line."""
    if line.startswith("AGE-SECRET-KEY-PQ-1"):
        raise AgeError("a post-quantum (hybrid) age identity, which the agent does not support")
    if line.startswith("AGE-PLUGIN-"):
        raise AgeError("an age plugin identity, which the agent does not support")
    if not line.startswith("AGE-SECRET-KEY-1"):
        raise AgeError("not an age identity (AGE-SECRET-KEY-1...)")
    try:
        hrp, secret = bech32_decode(line)
    except AgeError as exc:
        raise AgeError(f"a malformed age identity ({exc})") from None
    if hrp != "AGE-SECRET-KEY-" or len(secret) != 32:
        raise AgeError("a malformed age identity")
    public = X25519PrivateKey.from_private_bytes(secret).public_key().public_bytes_raw()
    return Identity(secret=secret, public=public, recipient=bech32_encode("age", public))


def parse_identities(text: str, *, several_per_line: bool = False) -> list[Identity]:
    """The identities of a key file (one per line; `#` comments and blank lines skipped), or of
    SOPS_AGE_KEY (`several_per_line`: whitespace-separated, as sops reads that variable)."""
    found: list[Identity] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line or line.startswith("#"):
            continue
        for word in line.split() if several_per_line else [line]:
            try:
                found.append(parse_identity(word))
            except AgeError as exc:
                raise AgeError(f"line {number} is {exc}") from None
    return found


def _b64_raw(text: str) -> bytes:
    """age's header base64: standard alphabet, no padding, canonical."""
    if not re.fullmatch(r"[A-Za-z0-9+/]*", text) or len(text) % 4 == 1:
        raise AgeError("malformed base64 in the header")
    data = base64.b64decode(text + "=" * (-len(text) % 4))
    if base64.b64encode(data).decode().rstrip("=") != text:
        raise AgeError("non-canonical base64 in the header")
    return data


def _dearmor(text: str) -> bytes:
    lines = text.strip().split("\n")
    lines = [line.removesuffix("\r") for line in lines]
    if len(lines) < 3 or lines[0] != _ARMOR_BEGIN or lines[-1] != _ARMOR_END:
        raise AgeError("not an armored age file")
    body = lines[1:-1]
    if any(len(line) != _COLUMNS for line in body[:-1]) or not 0 < len(body[-1]) <= _COLUMNS:
        raise AgeError("malformed armor lines")
    try:
        return base64.b64decode("".join(body), validate=True)
    except (binascii.Error, ValueError):
        raise AgeError("malformed base64 in the armor") from None


@dataclass
class _Stanza:
    type: str
    args: list[str]
    body: bytes


def _parse_header(data: bytes) -> tuple[list[_Stanza], bytes, bytes, bytes]:
    """(stanzas, header bytes the MAC covers, MAC, payload)."""
    if not data.startswith(_INTRO):
        raise AgeError("not an age v1 file")
    pos = len(_INTRO)
    stanzas: list[_Stanza] = []

    def line() -> bytes:
        nonlocal pos
        end = data.find(b"\n", pos)
        if end < 0:
            raise AgeError("truncated header")
        out, pos = data[pos:end], end + 1
        return out

    while True:
        start = pos
        first = line()
        if first.startswith(b"---"):
            parts = first.split(b" ")
            if parts[0] != b"---" or len(parts) != 2:
                raise AgeError("malformed header end")
            mac = _b64_raw(parts[1].decode("ascii", "replace"))
            if len(mac) != 32:
                raise AgeError("malformed header MAC")
            return stanzas, data[:start + 3], mac, data[pos:]
        words = first.decode("ascii", "replace").split(" ")
        if words[0] != "->" or len(words) < 2 or any(not w or any(not 33 <= ord(c) <= 126 for c in w) for w in words[1:]):
            raise AgeError("malformed stanza")
        body = b""
        while True:
            chunk = line().decode("ascii", "replace")
            decoded = _b64_raw(chunk)
            if len(chunk) > _COLUMNS:
                raise AgeError("malformed stanza body")
            body += decoded
            if len(chunk) < _COLUMNS:
                break
        stanzas.append(_Stanza(words[1], words[2:], body))


def _hkdf(key: bytes, salt: bytes | None, info: bytes) -> bytes:
    return HKDF(algorithm=SHA256(), length=32, salt=salt, info=info).derive(key)


def _unwrap(identity: Identity, stanza: _Stanza) -> bytes | None:
    """The file key, or None when the stanza is not for this identity."""
    if stanza.type != "X25519":
        return None
    if len(stanza.args) != 1:
        raise AgeError("malformed X25519 stanza")
    ephemeral = _b64_raw(stanza.args[0])
    if len(ephemeral) != 32 or len(stanza.body) != 32:
        raise AgeError("malformed X25519 stanza")
    try:
        shared = X25519PrivateKey.from_private_bytes(identity.secret).exchange(
            X25519PublicKey.from_public_bytes(ephemeral))
    except ValueError:
        raise AgeError("invalid X25519 stanza (a low-order point)") from None
    wrapping = _hkdf(shared, ephemeral + identity.public, _X25519_LABEL)
    try:
        return ChaCha20Poly1305(wrapping).decrypt(bytes(12), stanza.body, None)
    except InvalidTag:
        return None


def decrypt(armored: str, identities: Sequence[Identity]) -> bytes | None:
    """The plaintext of a small armored age file, or None when none of `identities` is one of
    its recipients. Raises AgeError when the file is malformed or fails its header MAC or
    payload authentication."""
    if len(armored) > _MAX_FILE:
        raise AgeError("the age file is too large")
    data = _dearmor(armored)
    stanzas, header, mac, payload = _parse_header(data)
    file_key = None
    for identity in identities:
        for stanza in stanzas:
            file_key = _unwrap(identity, stanza)
            if file_key is not None:
                break
        if file_key is not None:
            break
    if file_key is None:
        return None
    expected = hmac.new(_hkdf(file_key, None, b"header"), header, hashlib.sha256).digest()
    if not hmac.compare_digest(expected, mac):
        raise AgeError("bad header MAC")
    nonce, ciphertext = payload[:16], payload[16:]
    if len(nonce) != 16 or not 16 <= len(ciphertext) <= _CHUNK + 16:
        raise AgeError("a payload of other than one chunk")  # a SOPS data key is 32 bytes
    stream_key = _hkdf(file_key, nonce, b"payload")
    try:
        return ChaCha20Poly1305(stream_key).decrypt(bytes(11) + b"\x01", ciphertext, None)
    except InvalidTag:
        raise AgeError("the payload fails authentication") from None
