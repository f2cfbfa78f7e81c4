"""A promotion into an environment: one model's overlay of an Environment document
(`spec.models.<model>`) edited in the text of its file, every other byte kept. The model entry
and its `stable` key are added when absent (in the layout of their neighbours); the overlay's
canary is removed, or set to null when the Model itself declares one the environment would
otherwise inherit. A round-trip load checks that exactly the intended keys changed. Pure."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Literal

from ruamel.yaml.nodes import MappingNode, ScalarNode

from agent.errors import AgentError
from agent.promotion._change import PromoteError
from agent.promotion._yaml_text import (
    find_entry,
    last_end,
    line_end,
    load_all,
    model_spec,
    remove_entry,
    set_entries,
    splice,
    yaml_string,
)

CanaryEdit = Literal["keep", "drop", "null"]


def _step(spec_key: Any, spec: MappingNode) -> int:
    step = int(spec.value[0][0].start_mark.column) - int(spec_key.start_mark.column) if spec.value else 2
    return step if step > 0 else 2


def edit_overlay(text: str, doc_index: int, names: Sequence[str], *, stable: str | None = None,
                 canary: CanaryEdit = "keep") -> str:
    """The text of a YAML stream with the Environment at document `doc_index` changed: in its
    overlay of the model (found under spec.models by any of `names`, e.g. the bare name and
    namespace/name; added as names[0] when absent), `stable` set (None: left as it is) and the
    canary dropped ("drop"), set to null ("null", so the Model's own canary is not inherited)
    or kept. Raises PromoteError when the document's layout cannot take the edit."""
    bom, body, env_name, spec_key, spec = model_spec(text, doc_index)
    nl = "\r\n" if "\r\n" in body else "\n"
    step = _step(spec_key, spec)
    wanted: list[tuple[str, Any]] = []  # (key, value) the overlay must have, in order
    if stable is not None:
        wanted.append(("stable", stable))
    if canary == "null":
        wanted.append(("canary", None))
    edits: list[tuple[int, int, str]] = []
    models_entry = find_entry(spec, "models")
    entry = None
    if models_entry is not None and isinstance(models_entry[1], MappingNode):
        entry = next(((k, v) for k, v in models_entry[1].value if getattr(k, "value", None) in names), None)
    elif models_entry is not None and not (isinstance(models_entry[1], ScalarNode) and models_entry[1].value in
                                           ("", "null", "~")):
        raise PromoteError(f"environment {env_name!r}: spec.models is not a mapping")

    def scalar(key: str, value: Any, like: Any) -> str:
        return "null" if value is None else yaml_string(str(value), like)

    if entry is None:
        new_entries = [(k, scalar(k, v, None)) for k, v in wanted]
        if models_entry is not None and isinstance(models_entry[1], MappingNode) and models_entry[1].value:
            mapping = models_entry[1]
            if mapping.flow_style:
                fields = ", ".join(f"{k}: {t}" for k, t in new_entries)
                at = int(mapping.value[-1][1].end_mark.index)
                edits.append((at, at, f", {names[0]}: {{{fields}}}"))
            else:
                column = int(mapping.value[0][0].start_mark.column)
                pad, inner = " " * column, " " * (column + step)
                block = f"{pad}{names[0]}:{nl}" + "".join(f"{inner}{k}: {t}{nl}" for k, t in new_entries)
                edits += _append_block(body, mapping, block, nl)
        else:
            column = int(spec.value[0][0].start_mark.column) if spec.value else int(spec_key.start_mark.column) + 2
            pad = " " * column
            inner, inner2 = " " * (column + step), " " * (column + 2 * step)
            block = (f"{pad}models:{nl}{inner}{names[0]}:{nl}"
                     + "".join(f"{inner2}{k}: {t}{nl}" for k, t in new_entries))
            if spec.flow_style:
                raise PromoteError(f"environment {env_name!r}: spec is a flow mapping; add spec.models yourself")
            if models_entry is not None:  # `models:` with nothing: replace that line
                key = models_entry[0]
                start = body.rfind("\n", 0, int(key.start_mark.index)) + 1
                edits.append((start, line_end(body, int(key.start_mark.index)), block))
            else:
                edits += _append_block(body, spec, block, nl)
        overlay_after: dict[str, Any] | None = dict(wanted)
    else:
        key_node, overlay = entry
        if not isinstance(overlay, MappingNode):
            raise PromoteError(f"environment {env_name!r}: spec.models.{key_node.value} is not a mapping")
        old_stable = find_entry(overlay, "stable")
        old_canary = find_entry(overlay, "canary")
        sets: list[tuple[str, str, Any]] = []
        if stable is not None:
            sets.append(("stable", scalar("stable", stable, old_stable[1] if old_stable else None), old_stable))
        if canary == "null":
            is_null = old_canary is not None and isinstance(old_canary[1], ScalarNode) \
                and str(old_canary[1].tag).endswith(":null")
            if old_canary is not None and not is_null:
                edits.append(remove_entry(body, overlay, *old_canary))
                old_canary = None
            if old_canary is None:
                sets.append(("canary", "null", None))
        elif canary == "drop" and old_canary is not None:
            edits.append(remove_entry(body, overlay, *old_canary))
        if sets:
            if overlay.value:
                edits += set_entries(body, overlay, sets, nl)
            else:  # `name: {}`
                at = int(overlay.start_mark.index) + 1
                edits.append((at, at, ", ".join(f"{k}: {t}" for k, t, _ in sets)))
        overlay_after = None
    out = splice(body, edits)
    _check(body, out, doc_index, names, wanted, canary, overlay_after)
    return bom + out


def _append_block(body: str, mapping: Any, block: str, nl: str) -> list[tuple[int, int, str]]:
    at = line_end(body, max(last_end(mapping.value[-1][1]) - 1, 0))
    if at == len(body) and not body.endswith("\n"):
        block = nl + block[: -len(nl)]
    return [(at, at, block)]


def _check(before: str, after: str, doc_index: int, names: Sequence[str], wanted: list[tuple[str, Any]],
           canary: CanaryEdit, added: dict[str, Any] | None) -> None:
    """The edited text, read back, differs from the original in the intended keys only."""
    old, new = load_all(before), load_all(after)
    spec = dict(old[doc_index]["spec"])
    models = dict(spec.get("models") or {})
    name = next((n for n in names if n in models), names[0])
    overlay = dict(models.get(name) or {}) if added is None else dict(added)
    if added is None:
        for key, value in wanted:
            overlay[key] = value
        if canary == "drop":
            overlay.pop("canary", None)
    models[name] = overlay
    spec["models"] = models
    old[doc_index] = {**old[doc_index], "spec": spec}
    if json.dumps(old, sort_keys=True, default=str) != json.dumps(new, sort_keys=True, default=str):
        raise AgentError("internal error: the edited Environment does not read back as intended (a bug: please "
                         "report it)")
