"""Values of a SOPS file as sops sees them, for its MAC, and as the loader should read them.

sops reads YAML with yaml.v3 (YAML 1.2 core schema: `on` is a string, `0755` an octal integer,
`2024-01-01` a timestamp); the MAC covers each value as sops's ToBytes writes it (`True`,
`8080`, FormatFloat's shortest decimal, RFC 3339 with nanoseconds). A decrypted value replaces
its `ENC[...]` in place as one line of YAML the loader reads as the type sops recorded.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

import yaml


class SopsError(Exception):
    """A SOPS file that cannot be opened: reported as a problem of the file, never with a value."""

    def __init__(self, message: str, line: int = 1, field: str = "") -> None:
        super().__init__(message)
        self.message, self.line, self.field = message, line, field


@dataclass(frozen=True)
class Where:
    """A value's place, for messages: its line and dotted path of keys."""

    line: int
    field: str

    def error(self, message: str) -> SopsError:
        return SopsError(message, self.line, self.field)


@dataclass(frozen=True)
class Time:
    text: str  # RFC 3339 with nanoseconds, as Go's time.MarshalText writes it


_RESOLVER = yaml.resolver.Resolver()
_STR = "tag:yaml.org,2002:str"
_NULLS = frozenset({"", "~", "null", "Null", "NULL"})
_TRUE, _FALSE = frozenset({"true", "True", "TRUE"}), frozenset({"false", "False", "FALSE"})
_GO_TRUE, _GO_FALSE = frozenset({"1", "t", "T", "TRUE", "true", "True"}), frozenset({"0", "f", "F", "FALSE", "false", "False"})
_FLOAT = re.compile(r"[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?")
_GO_INT = re.compile(r"([-+]?)(0[xX][0-9a-fA-F]+|0[bB][01]+|0[oO]?[0-7]+|[1-9][0-9]*|0)")
_TIMESTAMPS = (  # yaml.v3's: RFC 3339 with short fields (T or t, a zone), space-separated (no zone), a date
    re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})[Tt]([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.([0-9]{1,9}))?"
               r"(Z|[-+][0-9]{2}:[0-9]{2})"),
    re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2}) ([0-9]{1,2}):([0-9]{1,2}):([0-9]{1,2})(?:\.([0-9]{1,9}))?()"),
    re.compile(r"([0-9]{4})-([0-9]{1,2})-([0-9]{1,2})()()()()()"),
)
_RFC3339 = re.compile(r"([0-9]{4})-([0-9]{2})-([0-9]{2})T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{1,9}))?"
                      r"(Z|[-+][0-9]{2}:[0-9]{2})")
INT64 = (-(1 << 63), (1 << 63) - 1)


def go_value(node: yaml.ScalarNode, where: Where) -> Any:
    """What yaml.v3 reads a scalar as: None, bool, int, float, Time or str."""
    implicit = _implicit_tag(node.value) if node.style is None else _STR
    if node.tag != implicit:
        raise where.error("explicit YAML tags are not supported in a SOPS file")
    s = str(node.value)
    if node.style is not None:
        return s
    if s in _NULLS:
        return None
    if s in _TRUE or s in _FALSE:
        return s in _TRUE
    if s in (".nan", ".NaN", ".NAN"):
        return math.nan
    if s in (".inf", ".Inf", ".INF", "+.inf", "+.Inf", "+.INF"):
        return math.inf
    if s in ("-.inf", "-.Inf", "-.INF"):
        return -math.inf
    if s.startswith("."):
        return float(s) if re.fullmatch(r"\.[0-9]+([eE][-+]?[0-9]+)?", s) else s
    if s[0] in "+-0123456789":
        stamp = _go_timestamp(s)
        if stamp is not None:
            return stamp
        plain = s.replace("_", "")
        number = _go_int(plain)
        if number is not None:
            if not INT64[0] <= number <= INT64[1]:
                raise where.error("integer out of range for sops (64 bits)")
            return number
        if _FLOAT.fullmatch(plain) and math.isfinite(float(plain)):
            return float(plain)
    return s


def _implicit_tag(value: str) -> str:
    """The tag PyYAML gives a plain scalar without an explicit one."""
    tag: str = _RESOLVER.resolve(yaml.ScalarNode, value, (True, False))  # type: ignore[no-untyped-call]
    return tag


def _date_time(m: re.Match[str]) -> datetime | None:
    """The date and time of an RFC 3339 match (groups 1-6), None when out of range."""
    y, mo, d, h, mi, sec = (int(g) for g in m.groups()[:6])
    try:
        return datetime(y, mo, d, h, mi, sec)
    except ValueError:
        return None


def _go_int(s: str) -> int | None:
    """strconv.ParseInt(s, 0, 64) without the range check: 0x, 0b, 0o and a leading 0 (octal)."""
    m = _GO_INT.fullmatch(s)
    if m is None:
        return None
    sign, digits = m.groups()
    prefix = digits[:2].lower()
    if prefix in ("0x", "0b", "0o"):
        value = int(digits[2:], {"0x": 16, "0b": 2, "0o": 8}[prefix])
    else:
        value = int(digits, 8 if digits.startswith("0") and len(digits) > 1 else 10)
    return -value if sign == "-" else value


def _go_timestamp(s: str) -> Time | None:
    for pattern in _TIMESTAMPS:
        m = pattern.fullmatch(s)
        if m is None:
            continue
        y, mo, d, h, mi, sec, frac, zone = m.groups()
        try:
            when = datetime(int(y), int(mo), int(d), int(h or 0), int(mi or 0), int(sec or 0))
        except ValueError:
            return None
        return Time(_format_time(when, frac or "", zone or "Z"))
    return None


def _format_time(when: datetime, frac: str, zone: str) -> str:
    fraction = frac.ljust(9, "0").rstrip("0")
    offset = "Z" if zone in ("Z", "+00:00", "-00:00") else zone
    return when.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if fraction else "") + offset


def rfc3339(s: str) -> str | None:
    """Go's time.Parse(RFC3339, s) then Format(RFC3339): fraction dropped, Z for a zero offset."""
    m = _RFC3339.fullmatch(s)
    when = _date_time(m) if m is not None else None
    if m is None or when is None:
        return None
    return _format_time(when, "", m.group(8))


def _go_float(value: float) -> str:
    """strconv.FormatFloat(value, 'f', -1, 64)."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    text = format(Decimal(repr(value)), "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def to_bytes(value: Any) -> bytes:
    """sops's ToBytes of what go_value returns (not None)."""
    if isinstance(value, bool):
        return b"True" if value else b"False"
    if isinstance(value, int):
        return str(value).encode()
    if isinstance(value, float):
        return _go_float(value).encode()
    if isinstance(value, Time):
        return value.text.encode()
    return str(value).encode("utf-8")


def typed(kind: str, plaintext: bytes, where: Where) -> tuple[bytes | None, str | None]:
    """A decrypted value of sops type `kind`: (the bytes the MAC covers, None for a comment; the
    YAML text that replaces the `ENC[...]`, None for a comment)."""
    bad = where.error(f"the decrypted value is not a valid {kind}")
    try:
        text = plaintext.decode("utf-8")
    except UnicodeDecodeError:
        raise where.error("the decrypted value is not UTF-8 text") from None
    if kind == "str":
        return plaintext, quote(text)
    if kind == "comment":
        return None, None
    if kind == "int":
        if not re.fullmatch(r"[-+]?[0-9]+", text) or not INT64[0] <= int(text) <= INT64[1]:
            raise bad
        return str(int(text)).encode(), str(int(text))
    if kind == "float":
        if not (_FLOAT.fullmatch(text) and math.isfinite(float(text))) and \
                not re.fullmatch(r"(?i)[-+]?(inf|infinity|nan)", text):
            raise bad
        value = float(text)
        if math.isnan(value) or math.isinf(value):
            shown = ".nan" if math.isnan(value) else "-.inf" if value < 0 else ".inf"  # the loader refuses them
        else:
            shown = repr(value)
            if "e" in shown and "." not in shown:
                shown = shown.replace("e", ".0e")  # a float to YAML 1.1 readers too
        return _go_float(value).encode(), shown
    if kind == "bool":
        if text not in _GO_TRUE and text not in _GO_FALSE:
            raise bad
        flag = text in _GO_TRUE
        return (b"True" if flag else b"False"), ("true" if flag else "false")
    if kind == "time":
        m = _RFC3339.fullmatch(text)
        when = _date_time(m) if m is not None else None
        if m is None or when is None:
            raise bad
        stamp = _format_time(when, m.group(7) or "", m.group(8))
        return stamp.encode(), quote(stamp)
    raise where.error(f"unsupported SOPS value type {kind!r}")


_ESCAPES = {"\n": "\\n", "\t": "\\t", "\r": "\\r", '"': '\\"', "\\": "\\\\"}


def quote(s: str) -> str:
    """A YAML double-quoted scalar on one line; anything not plainly printable is escaped."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif 0x20 <= o <= 0x7E or o >= 0x10000 or (0xA0 <= o <= 0xFFFD and o not in (0x2028, 0x2029, 0xFEFF)
                                                   and not 0xD800 <= o <= 0xDFFF):
            out.append(ch)
        elif o <= 0xFF:
            out.append(f"\\x{o:02x}")
        else:
            out.append(f"\\u{o:04x}")
    out.append('"')
    return "".join(out)


def shown(value: str) -> set[str]:
    """A decrypted value as a message could show it: as is, escaped as JSON, as a Python repr."""
    return {v for v in (value, json.dumps(value)[1:-1], repr(value)[1:-1]) if v} if value else set()
