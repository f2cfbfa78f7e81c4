"""The live plan: desired objects against live ones, with the server-side dry-run injected.

Like gitops-engine's diff with its ServerSideDryRunner: this module decides, the caller's
`dry_run(obj)` (a server-side-apply dry-run in the agent, a fake in tests) answers what the
server would store. No request is needed for an object whose live spec-hash matches the
rendered one and whose owned fields hash as they did after our last apply; only suspected
objects are dry-run, and the diff is the normalized live object against the dry-run result
(both server-side, so defaults never show up as differences).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from agent.plan._normalize import field_owners, normalize, owned_fields_hash
from agent.plan._plan import build_plan, change
from agent.plan._secret import secret_data_matches
from agent.plan._types import ObjectReport, Plan
from agent.render import SPEC_HASH_ANNOTATION, ObjectKey, object_key

DryRun = Callable[[dict[str, Any]], dict[str, Any]]  # desired object -> the object the server would store


def matches(want: dict[str, Any], have: dict[str, Any], fields_hash: str | None, manager: str) -> bool:
    """No request needed: the live object carries our rendered spec-hash and nobody took a
    field from us since our last apply (the fields we own hash as they did then, `fields_hash`
    from the inventory). A Secret is also compared by its effective data: a write through
    stringData leaves no trace in managedFields that we could rely on."""
    annotations = (have.get("metadata") or {}).get("annotations") or {}
    if annotations.get(SPEC_HASH_ANNOTATION) != want["metadata"]["annotations"][SPEC_HASH_ANNOTATION]:
        return False
    if not secret_data_matches(want, have):
        return False
    return bool(fields_hash) and fields_hash == owned_fields_hash(have, manager)


def compare(want: dict[str, Any], have: dict[str, Any], dry: dict[str, Any], manager: str) -> ObjectReport:
    """The change from `have` (live) to `dry` (what applying `want` would store); changed
    fields owned by another manager are drift, named by that manager."""
    before, after = normalize(have), normalize(dry)
    if before == after:
        return change("unchanged", before, after, [])
    result = change("update", before, after)
    drift = {path: ", ".join(owners) for path in result.changed_fields if (owners := field_owners(have, path, manager))}
    return dataclasses.replace(result, drift=drift) if drift else result


def live_plan(desired: list[dict[str, Any]], live: Mapping[ObjectKey, dict[str, Any]],
              foreign: Mapping[ObjectKey, tuple[str, dict[str, Any]]], owned: Mapping[ObjectKey, str],
              dry_run: DryRun, *, manager: str, prune: bool = True, adopt: bool = False, concurrency: int = 8,
              revision: dict[str, str] | None = None) -> Plan:
    """Plan `desired` against `live` (this target's objects) and `foreign` (other targets'),
    with `owned` the inventory (key -> owned-fields hash after our last apply)."""
    want = {object_key(o): o for o in desired}
    changes: dict[ObjectKey, ObjectReport] = {}
    suspects: list[tuple[ObjectKey, dict[str, Any]]] = []
    for key, obj in want.items():
        have = live.get(key)
        other = foreign.get(key)
        if have is None and other is not None:
            owner, theirs = other
            if adopt:  # taken over on purpose: an update of their object, labels included
                suspects.append((key, theirs))
            else:
                changes[key] = change("update", normalize(theirs), obj, owner_conflict=owner or "(no target label)")
        elif have is None:
            changes[key] = change("create", None, obj)
        elif matches(obj, have, owned.get(key), manager):
            changes[key] = change("unchanged", obj, obj, [])
        else:
            suspects.append((key, have))
    if suspects:
        def check(item: tuple[ObjectKey, dict[str, Any]]) -> ObjectReport:
            key, have = item
            return compare(want[key], have, dry_run(want[key]), manager)

        with ThreadPoolExecutor(max_workers=max(1, concurrency)) as pool:
            for (key, have), checked in zip(suspects, pool.map(check, suspects), strict=True):
                if checked.action == "unchanged" and key not in live:  # adopted: the labels change at least
                    checked = change("update", normalize(have), want[key])
                changes[key] = checked
    ordered = [changes[key] for key in sorted(changes)]
    if prune:
        for key in sorted(set(owned) - set(want)):
            have = live.get(key)
            if have is None:
                continue  # already gone
            ordered.append(change("delete", normalize(have), None))
    return build_plan(ordered, base={"short": "live"}, revision=revision or {})
