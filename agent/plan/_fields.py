"""Field-level comparison of two objects: which dotted paths differ."""

from __future__ import annotations

from typing import Any


def changed_paths(before: Any, after: Any, prefix: str = "") -> list[str]:
    if isinstance(before, dict) and isinstance(after, dict):
        out: list[str] = []
        for key in sorted(set(before) | set(after)):
            path = f"{prefix}.{key}" if prefix else str(key)
            if key not in before or key not in after:
                out.append(path)
            elif before[key] != after[key]:
                out.extend(changed_paths(before[key], after[key], path))
        return out
    if isinstance(before, list) and isinstance(after, list) and len(before) == len(after):
        out = []
        for i, (b, a) in enumerate(zip(before, after, strict=True)):
            if b != a:
                out.extend(changed_paths(b, a, f"{prefix}[{i}]"))
        return out
    return [prefix] if before != after else []
