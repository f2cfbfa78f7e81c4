"""Data for people and programs, the same on every command: `-o text|json|yaml`.

`document` writes a command's data as JSON or YAML (one shape for both: the YAML is the JSON
document's data), `plain` writes one value for a sentence or a table cell in words, never as
a Python repr (`GET 11, PATCH 2`, `yes`, `-`)."""

from __future__ import annotations

import json
from typing import Any

from agent.output._yamldiff import to_yaml

FORMATS = ("text", "json", "yaml")
"""What `-o` accepts on every command that prints data (diff adds markdown)."""


def document(doc: Any, fmt: str) -> str:
    """doc as `json` (indented, ending in a newline) or `yaml` (block style, keys sorted)."""
    text = json.dumps(doc, indent=2)
    if fmt == "json":
        return text + "\n"
    if fmt == "yaml":
        return to_yaml(json.loads(text))
    raise ValueError(f"not a data format: {fmt}")


def plain(value: object) -> str:
    """A value as a person reads it: yes/no, `GET 11, PATCH 2`, `a, b`, `-` for nothing."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(plain(v) for v in value) or "-"
    return "-" if value is None or value == "" else str(value)
