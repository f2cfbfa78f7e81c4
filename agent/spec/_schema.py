"""JSON Schema validation of our kinds, with errors pointing at the offending field.

Validators are built once per kind (building one costs far more than using it).
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from agent.errors import SpecError
from agent.spec._messages import fallback, pattern_words, show, simple
from agent.spec._yaml import Document

if TYPE_CHECKING:  # imported when first needed: a cached render never validates
    import jsonschema

SCHEMA_FILES = {
    "Model": "model.schema.json",
    "Monitor": "monitor.schema.json",
    "ServingRuntime": "servingruntime.schema.json",
    "RepositoryConfig": "repositoryconfig.schema.json",
    "Environment": "environment.schema.json",
}
_DEFS = "_defs.schema.json"


def schemas_dir() -> Path:
    """schemas/ of the source tree, or the copy installed under <prefix>/share."""
    candidates = [
        os.environ.get("AGENT_SCHEMAS_DIR", ""),
        str(Path(__file__).resolve().parents[2] / "schemas"),
        str(Path(sys.prefix) / "share" / "modelops-agent" / "schemas"),
    ]
    for candidate in candidates:
        if candidate and (Path(candidate) / _DEFS).is_file():
            return Path(candidate)
    raise FileNotFoundError("JSON schemas not found (set AGENT_SCHEMAS_DIR)")


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """Replace every `$ref` to our shared definitions with the definition itself.

    Our schemas are not recursive, so this terminates; it spares the validator a registry
    lookup per reference (a third of the validation time on a large repo)."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and "#/$defs/" in ref:
            target = _inline(defs[ref.rsplit("/", 1)[1]], defs)
            rest = {k: _inline(v, defs) for k, v in node.items() if k != "$ref"}
            return {**target, **rest} if rest else target
        return {k: _inline(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [_inline(v, defs) for v in node]
    return node


@cache
def validator(kind: str) -> jsonschema.protocols.Validator:
    directory = schemas_dir()
    schema = _inline(json.loads((directory / SCHEMA_FILES[kind]).read_text(encoding="utf-8")), _defs())
    import jsonschema

    base = jsonschema.validators.validator_for(schema)
    cls = jsonschema.validators.extend(base, {"pattern": _pattern})  # type: ignore[no-untyped-call]
    v: jsonschema.protocols.Validator = cls(schema)
    return v


@cache
def _compiled(pattern: str) -> re.Pattern[str]:
    # `$` in a Python regex also matches before a final newline, so "scorer\n" would pass
    # '^[a-z]...$'; every pattern of ours means the whole string
    return re.compile(pattern[:-1] + r"\Z" if pattern.endswith("$") and not pattern.endswith(r"\$") else pattern)


@cache
def _defs() -> dict[str, Any]:
    defs: dict[str, Any] = json.loads((schemas_dir() / _DEFS).read_text(encoding="utf-8"))["$defs"]
    return defs


def artifact_uri_problem(uri: str) -> str | None:
    """Why `uri` may not be served, or None: the schema's one rule for an artifact URI
    (`$defs.artifactUri`: Git's `uri` and every registry's answer are held to it)."""
    rule = _defs()["artifactUri"]
    if len(uri) <= rule["maxLength"] and _compiled(rule["pattern"]).search(uri):
        return None
    text = str(rule["description"])
    return "it is not " + text[0].lower() + text[1:].rstrip(".")


def _pattern(validator: Any, pattern: str, instance: Any, schema: Any) -> Iterator[jsonschema.ValidationError]:
    import jsonschema

    if isinstance(instance, str) and not _compiled(pattern).search(instance):
        yield jsonschema.ValidationError(f"{show(instance)} must be {pattern_words(pattern)}")


def validate(doc: Document, kind: str) -> list[SpecError]:
    """Every schema violation of one document, as located errors."""
    return [doc.error(path, message) for path, message in _messages(validator(kind), doc.data, doc)]


def _messages(v: jsonschema.protocols.Validator, data: Any,
              doc: Document | None = None) -> Iterator[tuple[list[str | int], str]]:
    for error in v.iter_errors(data):
        yield from _explain(error, v.schema, data, doc)


def _explain(
    error: jsonschema.ValidationError, root: Any = None, data: Any = None, doc: Document | None = None
) -> Iterator[tuple[list[str | int], str]]:
    path: list[str | int] = list(error.absolute_path)
    kind = error.validator
    if error.schema is False and kind is None:
        # `"field": false` (a field forbidden in this case): jsonschema leaves the field's own
        # name off the error's path, so find it by the schema path that led here
        yield [*path, *_forbidden_key(error, root, data, path)], "field not allowed here"
        return
    if "propertyNames" in error.absolute_schema_path and isinstance(error.instance, str):
        # a key of the mapping at `path` is invalid: point at the key itself
        described = error.schema.get("description") if isinstance(error.schema, dict) else None
        yield [*path, error.instance], f"invalid key {show(error.instance)}: {described or _key_reason(error)}"
        return
    if kind in ("additionalProperties", "unevaluatedProperties") and isinstance(error.instance, dict):
        allowed = set(error.schema.get("properties", {})) if isinstance(error.schema, dict) else set()
        for key in error.instance:
            if key not in allowed:
                known = ", ".join(sorted(allowed)) or "none"
                yield [*path, key], f"unknown field {show(key)} (allowed: {known})"
        return
    if kind == "false" or (kind is None and error.validator_value is False):
        yield path, "field not allowed here"
        return
    if kind in ("oneOf", "anyOf") and error.context:
        # a quantity or similar union: report the simplest reason
        described = error.schema.get("description") if isinstance(error.schema, dict) else None
        reason = described or _shortest(error.context, doc)
        yield path, f"{show(error.instance)} is not valid: {reason}"
        return
    if kind == "not":
        if _both_scaling(error):
            yield path, "replicas and autoscaling are mutually exclusive"
        elif isinstance(error.instance, dict):  # not a mapping: its type error says so
            yield path, fallback("not", error.instance)
        return

    def written() -> str | None:
        return doc.plain_scalar(path) if doc is not None else None

    message = simple(str(kind), error.validator_value, error.instance, error.schema, path, written)
    yield path, message if message is not None else fallback(str(kind), error.instance)


def _forbidden_key(
    error: jsonschema.ValidationError, root: Any, data: Any, path: list[str | int]
) -> list[str]:
    """The name of the forbidden field: a `false` entry of the schema that led here."""
    parent: Any = data
    for key in path:
        try:
            parent = parent[key]
        except (KeyError, IndexError, TypeError):
            return []
    if not isinstance(parent, dict):
        return []
    node: Any = root
    for step in error.relative_schema_path:
        if isinstance(node, dict):
            node = node.get(step)
        elif isinstance(node, list) and isinstance(step, int) and step < len(node):
            node = node[step]
        else:
            node = None
    forbidden: list[str] = []
    if isinstance(node, dict):
        forbidden = [k for k, sub in node.items() if sub is False and k in parent]
    candidates = forbidden or list(parent)
    same = [k for k in candidates if parent[k] is error.instance]
    return (same or forbidden)[:1]


def _key_reason(error: jsonschema.ValidationError) -> str:
    if error.validator == "pattern":
        return f"a key must be {pattern_words(str(error.validator_value))}"
    return next((message for _, message in _explain(error)), "not allowed")


def _shortest(context: list[jsonschema.ValidationError], doc: Document | None) -> str:
    return min((message for c in context for _, message in _explain(c, doc=doc)), key=len)


def _both_scaling(error: jsonschema.ValidationError) -> bool:
    inst = error.instance
    return isinstance(inst, dict) and "replicas" in inst and "autoscaling" in inst
