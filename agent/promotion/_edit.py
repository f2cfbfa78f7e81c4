"""`agent promote`'s edit: a Model's stable/canary changed in the text of its file, every other
byte kept; a round-trip load of the result checks that exactly the intended keys changed. Pure."""

from __future__ import annotations

import json
from typing import Any

from ruamel.yaml.nodes import MappingNode, ScalarNode, SequenceNode

from agent.errors import AgentError
from agent.promotion._change import Change, PromoteError
from agent.promotion._yaml_text import (
    compose,
    find_entry,
    line_end,
    load_all,
    model_spec,
    remove_entry,
    set_entries,
    splice,
    yaml_string,
)


def edit_model_document(text: str, doc_index: int, change: Change) -> str:
    """The text of a YAML stream with the Model at document `doc_index` changed as `change`
    says; every byte outside the changed values is kept. Raises PromoteError when the change
    does not apply (no canary to move, unknown version, traffic outside 0-100)."""
    bom, body, name, spec_key, spec = model_spec(text, doc_index)
    stable_entry = find_entry(spec, "stable")
    if stable_entry is None or not isinstance(stable_entry[1], ScalarNode):
        raise PromoteError(f"model {name!r} has no spec.stable")
    stable_key, stable = stable_entry
    canary_entry = find_entry(spec, "canary")
    canary = canary_entry[1] if canary_entry else None
    canary_version = find_entry(canary, "version") if canary is not None else None
    canary_traffic = find_entry(canary, "traffic") if canary is not None else None
    versions: list[str] = []
    versions_entry = find_entry(spec, "versions")
    if versions_entry and isinstance(versions_entry[1], SequenceNode):
        for item in versions_entry[1].value:
            v = find_entry(item, "version")
            if v is not None and isinstance(v[1], ScalarNode):
                versions.append(str(v[1].value))

    if change.traffic is not None and not 0 <= change.traffic <= 100:
        raise PromoteError(f"traffic {change.traffic} is outside 0-100 (percent of requests to the canary)")
    if change.action != "canary" and canary is None:
        hint = {"traffic": "--traffic alone moves an existing canary's split; start one with --canary VERSION "
                           "--traffic PCT",
                "stable": "--stable makes the canary version stable",
                "rollback": "--rollback drops the canary"}[change.action]
        raise PromoteError(f"model {name!r} has no canary: {hint}")
    if change.action == "canary":
        assert change.version is not None
        if change.version not in versions:
            raise PromoteError(f"model {name!r} has no version {change.version!r} (versions: "
                               f"{', '.join(versions) or 'none'})")
        if change.version == str(stable.value):
            raise PromoteError(f"version {change.version!r} of model {name!r} is already the stable version")
        rollout = find_entry(spec, "rollout")
        if change.traffic is None and (rollout is None or not isinstance(rollout[1], MappingNode)):
            raise PromoteError(f"--canary {change.version} needs --traffic PCT (the canary's share of requests, "
                               f"0-100): no spec.rollout decides the traffic of model {name!r}")
    if change.action in ("canary", "traffic") and canary is not None and not isinstance(canary, MappingNode):
        raise PromoteError(f"model {name!r}: spec.canary is not a mapping")
    if canary_traffic is not None and change.traffic is not None and not isinstance(canary_traffic[1], ScalarNode):
        raise PromoteError(f"model {name!r}: spec.canary.traffic is not a number")

    edits: list[tuple[int, int, str]] = []
    nl = "\r\n" if "\r\n" in body else "\n"

    def remove_canary() -> None:
        assert canary_entry is not None
        edits.append(remove_entry(body, spec, *canary_entry))

    if change.action in ("canary", "traffic"):
        wanted: list[tuple[str, str, Any]] = []  # (key, YAML text, the scalar it replaces when there is one)
        if change.action == "canary":
            assert change.version is not None
            like = canary_version[1] if canary_version is not None else stable
            wanted.append(("version", yaml_string(change.version, like), canary_version))
        if change.traffic is not None:
            wanted.append(("traffic", str(change.traffic), canary_traffic))
        if canary is not None:
            edits += set_entries(body, canary, wanted, nl)
        elif spec.flow_style:
            at = int(stable.end_mark.index)
            fields = ", ".join(f"{key}: {text}" for key, text, _ in wanted)
            edits.append((at, at, f", canary: {{{fields}}}"))
        else:
            column = int(stable_key.start_mark.column)
            step = column - int(spec_key.start_mark.column)
            inner = " " * (column + (step if step > 0 else 2))
            block = f"{' ' * column}canary:{nl}" + "".join(f"{inner}{key}: {text}{nl}" for key, text, _ in wanted)
            at = line_end(body, int(stable.end_mark.index))
            if at == len(body) and not body.endswith("\n"):
                block = nl + block[: -len(nl)]
            edits.append((at, at, block))
    elif change.action == "stable":
        assert canary_version is not None
        edits.append((int(stable.start_mark.index), int(stable.end_mark.index),
                      yaml_string(str(canary_version[1].value), stable)))
        remove_canary()
    else:
        remove_canary()

    out = splice(body, edits)
    _check(body, out, doc_index, change, str(canary_version[1].value) if canary_version else None)
    return bom + out


def _check(before: str, after: str, doc_index: int, change: Change, old_canary: str | None) -> None:
    """The edited text, read back, differs from the original in the intended keys only."""
    old, new = load_all(before), load_all(after)
    spec = dict(old[doc_index]["spec"])
    if change.action in ("canary", "traffic"):
        canary = dict(spec.get("canary") or {})
        if change.action == "canary":
            canary["version"] = change.version
        if change.traffic is not None:
            canary["traffic"] = change.traffic
        spec["canary"] = canary
    else:
        if change.action == "stable":
            spec["stable"] = old_canary
        spec.pop("canary", None)
    old[doc_index] = {**old[doc_index], "spec": spec}
    if json.dumps(old, sort_keys=True, default=str) != json.dumps(new, sort_keys=True, default=str):
        raise AgentError("internal error: the edited file does not read back as intended (a bug: please report it)")


def document_at(text: str, line: int) -> int:
    """The index of the document whose root starts at 1-based `line` (a spec Location)."""
    body = text[1:] if text.startswith("\ufeff") else text
    for index, node in enumerate(compose(body)):
        if isinstance(node, MappingNode) and int(node.start_mark.line) + 1 == line:
            return index
    raise PromoteError(f"no document starts at line {line}")
