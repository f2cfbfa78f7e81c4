"""What the readers of each kind share: which documents are ours and valid, locations,
duplicates, namespaces allowed by policy, Prometheus durations."""

from __future__ import annotations

import fnmatch
import re
from typing import Any

from agent.errors import SpecError
from agent.spec import _k8s, _schema
from agent.spec._types import API_VERSION, GROUP, Location, RepositoryConfig
from agent.spec._yaml import Document, dotted

# A file's parse: its documents and its YAML errors.
Parsed = tuple[list[Document], list[SpecError]]


def validated(doc: Document, kind: str) -> list[SpecError]:
    if doc.schema_errors is None:
        errors = _schema.validate(doc, kind)
        meta = doc.data.get("metadata") if isinstance(doc.data, dict) else None
        too_big = _k8s.annotations_size_problem(meta.get("annotations")) if isinstance(meta, dict) else None
        if too_big:
            errors.append(doc.error(["metadata", "annotations"], too_big))
        doc.schema_errors = errors
    return doc.schema_errors


def is_ours(doc: Document, kind: str) -> bool:
    d = doc.data
    return isinstance(d, dict) and d.get("apiVersion") == API_VERSION and d.get("kind") == kind


def classify(doc: Document, errors: list[SpecError]) -> str | None:
    """Our kind name, "" for a raw manifest, or None (with an error) for neither."""
    data = doc.data
    if not isinstance(data, dict):
        errors.append(doc.error([], "each YAML document must be a mapping with apiVersion and kind"))
        return None
    api, kind = data.get("apiVersion"), data.get("kind")
    if not isinstance(api, str) or not api:
        errors.append(doc.error(["apiVersion"], "missing or empty apiVersion"))
        return None
    if not isinstance(kind, str) or not kind:
        errors.append(doc.error(["kind"], "missing or empty kind"))
        return None
    if api.split("/")[0] == GROUP:
        if api != API_VERSION:
            errors.append(doc.error(["apiVersion"], f"unsupported version {api!r} (supported: {API_VERSION})"))
            return None
        if kind not in _schema.SCHEMA_FILES:
            known = ", ".join(sorted(_schema.SCHEMA_FILES))
            errors.append(doc.error(["kind"], f"unknown kind {kind!r} for {API_VERSION} (known: {known})"))
            return None
        schema_errors = validated(doc, kind)
        if schema_errors:
            errors.extend(schema_errors)
            return None
        return kind
    return ""


def unique(items: list[Any], key: Any, what: str, errors: list[SpecError]) -> dict[str, Any]:
    seen: dict[str, Any] = {}
    for item in items:
        k = key(item)
        if k in seen:
            first = seen[k].location
            errors.append(SpecError(
                item.location.file, item.location.line, "metadata.name",
                f"duplicate {what} {k!r} (first declared at {first.file}:{first.line})",
            ))
        else:
            seen[k] = item
    return seen


def location_of(doc: Document) -> Location:
    return Location(doc.path, doc.line)


def check_namespace(doc: Document, path: list[str | int], ns: str, config: RepositoryConfig, errors: list[SpecError]) -> bool:
    allowed = config.policy.allowed_namespaces
    if allowed and not any(fnmatch.fnmatchcase(ns, pattern) for pattern in allowed):
        errors.append(doc.error(path, f"namespace {ns!r} is not allowed by policy.allowedNamespaces ({', '.join(allowed)})"))
        return False
    if ns in _k8s.PROTECTED_NAMESPACES and ns not in allowed:
        # the cluster's own namespaces are never matched by a glob or by an empty policy
        errors.append(doc.error(path, f"namespace {ns!r} belongs to the cluster: allowed only when "
                                      "policy.allowedNamespaces names it exactly"))
        return False
    return True


_DURATION_PART = re.compile(r"([0-9]+)(ms|s|m|h|d|w|y)")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0, "y": 31536000.0}


def seconds_of(duration: str) -> float:
    """Seconds of a Prometheus duration (30s, 5m, 1h30m, 500ms; a year is 365 days, as in
    Prometheus): the controller waits and compares in seconds. ValueError if unreadable."""
    pos, total = 0, 0.0
    for match in _DURATION_PART.finditer(duration):
        if match.start() != pos:
            break
        total += int(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        pos = match.end()
    if pos != len(duration) or not duration:
        raise ValueError(f"not a Prometheus duration: {duration!r}")
    return total


def missing_field(doc: Document, field_path: list[str | int], message: str) -> SpecError:
    """An error on a missing field, at the line of its parent's key (as the schema's
    "missing required field" errors are)."""
    return SpecError(doc.path, doc.line_of(field_path[:-1]), dotted(field_path), message)
