"""Schema errors in plain words: what jsonschema says, translated for a person who wrote YAML.

jsonschema's own messages show Python values (`{'metric': 'auc'} does not have enough
properties`, `None is not one of ...`, `True is not of type 'string'`) and raw regular
expressions. Here every validator our schemas use gets a sentence of its own, values are shown
as they are written in YAML (`{metric: auc}`, `null`, `true`), a known pattern is said in words,
and a number or boolean where a string belongs comes with the quoted form to write instead.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

# Every pattern of schemas/, in words (a test checks that none is missing): "must be <words>".
PATTERN_WORDS: Mapping[str, str] = {
    r"^[a-z]([-a-z0-9]*[a-z0-9])?$":
        "lowercase letters, digits and '-', starting with a letter and ending with a letter or digit",
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$":
        "lowercase letters, digits and '-', starting and ending with a letter or digit",
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$":
        "a DNS name: lowercase letters, digits, '-' and '.', each part between dots starting and ending with a "
        "letter or digit",
    r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$":
        "empty, or letters, digits, '-', '_' and '.', starting and ending with a letter or digit",
    r"^(?![^/]{254})([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$":
        "a label or annotation key: an optional DNS name and '/', then at most 63 letters, digits, '-', '_' and "
        "'.', starting and ending with a letter or digit",
    r"^[0-9]+(\.[0-9]+)?(m|k|M|G|T|P|E|Ki|Mi|Gi|Ti|Pi|Ei)?$":
        "a Kubernetes quantity such as 500m, 2, 1.5 or 4Gi",
    r"^([0-9]+y)?([0-9]+w)?([0-9]+d)?([0-9]+h)?([0-9]+m)?([0-9]+s)?([0-9]+ms)?$":
        "a Prometheus duration such as 30s, 5m or 1h30m (units y, w, d, h, m, s, ms in that order, each at most "
        "once)",
    r"^[A-Za-z_][A-Za-z0-9_]*$":
        "an environment variable name: letters, digits and '_', not starting with a digit",
    r"^[a-z0-9][a-z0-9_.-]*$":
        "lowercase letters, digits, '_', '.' and '-', starting with a letter or digit (sklearn, xgboost, ...)",
    r"^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$":
        "at most 63 letters, digits, '.', '_' and '-', starting and ending with a letter or digit",
    '^(s3|gs|azure|https?|pvc|oci|hf)://([^\\s\\x00-\\x1f\\x7f-\\x9f\\u'
    '00ad\\u061c\\u180e\\u200b-\\u200f\\u202a-\\u202e\\u2060-\\u206f\\ufeff\\ufff9-\\ufffb"\'`;\\\\$]|\\$(?!\\())+$':
        "a URI with the scheme s3, gs, azure, http, https, pvc, oci or hf (such as s3://bucket/path/), with no "
        "whitespace, control or invisible characters, quotes, backticks, ';', backslashes or '$('",
    r"^sha256:[a-f0-9]{64}$":
        "'sha256:' and 64 lowercase hex digits",
    r"^[1-9][0-9]*$":
        "a version number: digits, not starting with 0",
    r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?/)?[a-z]([-a-z0-9]*[a-z0-9])?$":
        "a Model's name, or its namespace, '/' and its name",
    r"^https?://[^\s]+$":
        "an http:// or https:// URL without whitespace",
    r"^[A-Za-z_][A-Za-z0-9_-]{0,254}$":
        "at most 255 letters, digits, '_' and '-', starting with a letter or '_'",
    r"^([a-z0-9_./-]+:)?[a-z0-9]([a-z0-9/-]*[a-z0-9])?$":
        "an artifact name: lowercase letters, digits, '/' and '-', starting and ending with a letter or digit, "
        "after an optional 'directory:'",
    r"^v?(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)([-+][0-9A-Za-z.+-]+)?$":
        "a semantic version such as v1.2.0 or 1.2.0",
    r"^[a-z0-9]([a-z0-9/-]*[a-z0-9])?$":
        "lowercase letters, digits, '/' and '-', starting and ending with a letter or digit",
    r"^[^/].*\.ya?ml$":
        "a path from the repo root (not starting with '/') to a .yaml or .yml file",
    r"^[A-Za-z_][A-Za-z0-9_.:-]*$":
        "letters, digits, '_', '.', ':' and '-', starting with a letter or '_'",
    r"^([a-z0-9.-]+/)?[A-Z][A-Za-z0-9]*$":
        "a kind such as Deployment, or group/Kind such as apps/Deployment",
    r"^[a-zA-Z_:][a-zA-Z0-9_:]*$":
        "a Prometheus metric name: letters, digits, '_' and ':', not starting with a digit",
    r"^https?://.+$":
        "an http:// or https:// URL",
    r"^[a-z0-9][a-z0-9._/:@-]*$":
        "a container image such as registry.example/team/server:1.2 (lowercase letters, digits and . _ / : @ -)",
    r"^/":
        "a path starting with '/'",
}

_TYPE_WORDS = {"string": "a string", "integer": "an integer", "number": "a number", "boolean": "true or false",
               "array": "a list", "object": "a mapping", "null": "empty (null)"}
_SHOWN_LIMIT = 80


def show(value: Any) -> str:
    """A value as it would be written in YAML, on one line: 'text', 12, true, null, [a, b],
    {metric: auc}; long ones cut with '...'."""
    text = _flow(value)
    return text if len(text) <= _SHOWN_LIMIT else text[:_SHOWN_LIMIT - 3] + "..."


_BARE = re.compile(r"[A-Za-z_][A-Za-z0-9_./-]*")
_NOT_BARE = {"null", "true", "false", "yes", "no", "on", "off", "y", "n", "~"}


def _flow(value: Any, nested: bool = False) -> str:
    """`nested`: inside a list or mapping, where a plain word is written without quotes."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and not math.isfinite(value):
        return ".nan" if math.isnan(value) else (".inf" if value > 0 else "-.inf")
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, str):
        return value if nested and _BARE.fullmatch(value) and value.lower() not in _NOT_BARE else _quoted(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_key(k)}: {_flow(v, True)}" for k, v in value.items()) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_flow(v, True) for v in value) + "]"
    return _quoted(str(value))


def _quoted(text: str) -> str:
    """'text' (YAML single quotes), or "text" with escapes when it holds a quote or a control
    character."""
    if "'" not in text and text.isprintable():
        return f"'{text}'"
    return json.dumps(text, ensure_ascii=False)


def _key(key: Any) -> str:
    text = str(key)
    return text if re.fullmatch(r"[A-Za-z0-9_.-]+", text) else _quoted(text)


def kind_of(value: Any) -> str:
    """What a YAML value is, in words: a string, a number, true/false, empty, a list, a mapping."""
    if value is None:
        return "empty (null)"
    if isinstance(value, bool):
        return "a boolean in YAML"
    if isinstance(value, (int, float)):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return "a value of another kind"


def why_not_a_string(value: Any) -> str:
    """Why a value that must be a string is not, and what to write: `1 is a number: quote it`."""
    if value is None:
        return 'it is empty (null): write "" for an empty string'
    if isinstance(value, (dict, list)):
        return f"{show(value)} is {kind_of(value)}"
    return f"{show(value)} is {kind_of(value)}: quote it"


def expected_types(types: Any) -> str:
    names = [types] if isinstance(types, str) else list(types or [])
    return " or ".join(_TYPE_WORDS.get(str(n), str(n)) for n in names) or "another value"


def pattern_words(pattern: str) -> str:
    """What a pattern of our schemas allows, in words (the pattern itself for one not known)."""
    return PATTERN_WORDS.get(pattern, f"text matching the pattern {pattern}")


Plain = Callable[[], "str | None"]  # the scalar as written, when it is a plain (unquoted) scalar


def type_message(instance: Any, types: Any, written: Plain) -> str:
    """`1 is a number, expected a string (quote it: "1")`."""
    raw = written() if isinstance(instance, (bool, int, float)) else None
    shown = raw if raw is not None else show(instance)
    wanted = expected_types(types)
    if instance is None:
        return f"empty (null), expected {wanted}"
    message = f"{shown} is {kind_of(instance)}, expected {wanted}"
    wants_string = types == "string" or (isinstance(types, list) and "string" in types)
    if wants_string and raw is not None:
        message += f" (quote it: {json.dumps(raw, ensure_ascii=False)})"
    return message


def _count(n: Any, noun: str) -> str:
    """`1 item`, `3 items`."""
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


# the bound keywords: `<value> <words> <bound>`
_BOUNDS = {"minimum": "is less than the minimum of", "maximum": "is greater than the maximum of",
           "exclusiveMinimum": "must be greater than", "exclusiveMaximum": "must be less than"}


def _noun(path: list[str | int]) -> str:
    """`a gate` for spec.gates[0], else `this mapping`."""
    if len(path) >= 2 and isinstance(path[-1], int) and isinstance(path[-2], str) and path[-2].endswith("s"):
        singular = path[-2][:-1]
        return ("an " if singular[:1] in "aeiou" else "a ") + singular
    return "this mapping"


def _one_of(options: list[str]) -> str:
    if len(options) == 2:
        return f"{options[0]}, {options[1]} or both"
    return "at least one of " + ", ".join(options)


def simple(kind: str, value: Any, instance: Any, schema: Any, path: list[str | int], written: Plain) -> str | None:
    """The message for one failed keyword of the simple validators, or None for another kind."""
    if kind == "type":
        return type_message(instance, value, written)
    if kind == "enum":
        return f"{show(instance)} is not one of {', '.join(show(c) for c in (value or []))}"
    if kind == "const":
        return f"must be {show(value)}, got {show(instance)}"
    if kind == "pattern":
        return f"{show(instance)} must be {pattern_words(str(value))}"
    if kind in _BOUNDS:
        return f"{show(instance)} {_BOUNDS[kind]} {show(value)}"
    if kind == "minLength":
        return "must not be empty" if value == 1 else f"{show(instance)} is too short: at least {_count(value, 'character')}"
    if kind == "maxLength":
        return f"{show(instance)} is too long: at most {_count(value, 'character')}, it has {len(instance)}"
    if kind == "minItems":
        return "must not be empty" if value == 1 else f"needs at least {_count(value, 'item')}, it has {len(instance)}"
    if kind == "maxItems":
        return f"is too long: at most {_count(value, 'item')}, it has {len(instance)}"
    if kind == "uniqueItems":
        seen: list[Any] = []
        for item in instance:
            if item in seen:
                return f"{show(item)} is listed twice"
            seen.append(item)
        return "has duplicate items"
    if kind == "minProperties":
        properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
        options = [k for k in properties if k not in (schema.get("required") or []) and k not in instance]
        if options:
            return f"{_noun(path)} needs {_one_of(options)}"
        return f"needs at least {value} fields"
    if kind == "required":
        missing = [k for k in (value or []) if isinstance(instance, dict) and k not in instance]
        return f"missing required field {show(missing[0] if missing else value)}"
    return None


def fallback(kind: str, instance: Any) -> str:
    """A keyword none of the above knows: named, with the value as YAML (never a Python repr)."""
    return f"{show(instance)} is not valid here (schema rule {kind})"
