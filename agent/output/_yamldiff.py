"""Unified diff of two objects as YAML (both sides already redacted)."""

from __future__ import annotations

import difflib
from typing import Any

import yaml


def to_yaml(obj: dict[str, Any] | None) -> str:
    if obj is None:
        return ""
    return yaml.dump(obj, Dumper=yaml.CSafeDumper, sort_keys=True, default_flow_style=False, width=120)


LIVE_SIDES = ("live", "desired")


def unified(before: dict[str, Any] | None, after: dict[str, Any] | None, name: str,
            sides: tuple[str, str] = LIVE_SIDES) -> list[str]:
    """The diff's header names each side `<side>/<name>` (`/dev/null` when the object is
    absent there): `live`/`desired` against a cluster, the two revisions offline."""
    a, b = to_yaml(before).splitlines(), to_yaml(after).splitlines()
    return list(difflib.unified_diff(a, b, f"{sides[0]}/{name}" if before else "/dev/null",
                                     f"{sides[1]}/{name}" if after else "/dev/null", lineterm="", n=3))
