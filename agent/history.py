"""`agent history [MODEL]`: the deployments of a model, newest first, from the audit log.

A deployment is a commit (with the versions it serves) that changed the model's objects: the
`reconcile` record of the pass that wrote them names the commit, its author and pull request,
the result, and (`models`) the model's stable version, canary and traffic; older logs without
`models` still tell which models changed from the pass's `object` records. Later passes of the
same commit and versions (a rollout's steps, a drift heal) fold into it, keeping the newest
traffic. What the rollout then did is read from the controller's `rollout` transitions,
`rollout-outcome` (the commit or pull request written back), a human's `rollout-override`,
`rollout-state-invalid` and `registry-moved` records of the model: its outcome is the last of
them that says where the rollout stands.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from agent.audit import read_records
from agent.engine import load_desired
from agent.errors import AgentError, ValidationFailed

# what a rollout transition means for the deployment, in words
_OUTCOME = {
    "started": "in progress", "advanced": "in progress", "check-failed": "in progress", "resumed": "in progress",
    "paused": "paused", "succeeded": "succeeded", "switched": "switched", "promoted": "promoted",
    "rolled-back": "rolled back", "aborted": "aborted", "finished": "finished", "reset": "ended by Git",
}
_OVERRIDE = {"abort": "aborted", "promote": "promoted", "pause": "paused", "resume": "in progress"}
_PAST = {"abort": "aborted", "promote": "promoted", "pause": "paused", "resume": "resumed"}


def _model_matches(key: str, name: str | None, namespace: str | None) -> bool:
    ns, _, model = key.partition("/")
    return (name is None or model == name) and (namespace is None or ns == namespace)


def deployments(records: Iterable[dict[str, Any]], *, name: str | None = None, namespace: str | None = None,
                target: str | None = None) -> list[dict[str, Any]]:
    """The deployments of the models named `name` (every model when None; in `namespace` when
    given) of `target` (any when None), newest first."""
    pending: dict[str, set[str]] = {}  # agent identity -> models its pass in progress changed
    entries: list[dict[str, Any]] = []
    latest: dict[str, dict[str, Any]] = {}  # model key -> its newest deployment
    for record in records:
        event, who = record.get("event"), str(record.get("agent", ""))
        if event == "object" and not record.get("dry_run") and record.get("model"):
            pending.setdefault(who, set()).add(str(record["model"]))
        elif event == "reconcile":
            changed = pending.pop(who, set())
            if record.get("dry_run") or (target is not None and record.get("target") != target):
                continue
            _deployed(record, changed, entries, latest, name, namespace)
        elif event in ("rollout", "rollout-outcome", "rollout-override", "rollout-state-invalid"):
            entry = latest.get(str(record.get("model", "")))
            if entry is not None:
                _rollout_event(entry, event, record)
        elif event == "registry-moved":
            for line in record.get("moved") or []:
                key = str(line).split(" ", 1)[0]
                if key in latest:
                    latest[key]["events"].append({"time": record.get("time"), "event": event, "text": str(line)})
    return sorted(entries, key=lambda e: (str(e["time"]), e["model"]), reverse=True)


def _deployed(record: dict[str, Any], changed: set[str], entries: list[dict[str, Any]],
              latest: dict[str, dict[str, Any]], name: str | None, namespace: str | None) -> None:
    versions = {str(m.get("model")): m for m in record.get("models") or [] if isinstance(m, dict)}
    resolved: dict[str, list[dict[str, str]]] = {}
    for r in record.get("resolved") or []:
        if isinstance(r, dict):
            resolved.setdefault(str(r.get("model")), []).append(
                {"version": str(r.get("version")), "registryVersion": str(r.get("registry_version"))})
    for key in sorted(set(versions) | changed):
        if not _model_matches(key, name, namespace):
            continue
        shown = versions.get(key, {})
        commit = str(record.get("commit") or "")
        same = (commit, shown.get("stable"), shown.get("canary"), bool(shown.get("removed")), resolved.get(key))
        entry = latest.get(key)
        if entry is not None and commit and entry["_same"] == same:  # a later pass of the same deployment
            entry.update(lastTime=record.get("time"), applies=entry["applies"] + 1)
            if shown.get("traffic") is not None:
                entry["traffic"] = shown["traffic"]
            if record.get("result") != "succeeded":
                entry["result"] = record.get("result")
            continue
        message = str(record.get("message") or "")
        entry = {
            "model": key, "time": record.get("time"), "lastTime": record.get("time"), "commit": commit,
            "author": str(record.get("author") or ""), "message": message.splitlines()[0] if message else "",
            "pullRequest": record.get("pull_request") or None, "signer": record.get("signer") or None,
            "stable": shown.get("stable"), "canary": shown.get("canary"), "traffic": shown.get("traffic"),
            "removed": bool(shown.get("removed")), "registry": resolved.get(key, []),
            "result": record.get("result"), "applies": 1, "by": record.get("agent"),
            "rollout": None, "events": [], "_same": same,
        }
        entries.append(entry)
        latest[key] = entry


def _rollout_event(entry: dict[str, Any], event: str, record: dict[str, Any]) -> None:
    when = record.get("time")
    if event == "rollout":
        kind = str(record.get("transition", ""))
        detail = str(record.get("reason") or "")
        text = f"{kind}: {detail}".rstrip(": ")
        if record.get("traffic") is not None:
            entry["traffic"] = record["traffic"]
        outcome = _OUTCOME.get(kind)
    elif event == "rollout-override":
        action = str(record.get("action", ""))
        reason = f": {record['reason']}" if record.get("reason") else ""
        text = detail = f"{_PAST.get(action, action)} by {record.get('who', 'someone')}{reason}"
        traffic = record.get("traffic")
        if isinstance(traffic, dict) and traffic.get("to") is not None:
            entry["traffic"] = traffic["to"]
        outcome = _OVERRIDE.get(action)
    elif event == "rollout-outcome":
        result = str(record.get("outcome", ""))
        if result == "write-failed":
            text = detail = f"outcome not written to Git: {record.get('error', '')}"
        else:
            where = record.get("pull_request") or (f"commit {str(record.get('pushed'))[:12]}" if record.get("pushed")
                                                   else "Git")
            text = detail = f"{'made stable' if result == 'stable' else 'revert proposed'} in {where}"
        outcome = None
    else:  # rollout-state-invalid
        text = detail = f"invalid rollout state: {record.get('reason', '')}"
        outcome = "held (invalid state)"
    entry["events"].append({"time": when, "event": event, "text": text})
    if outcome is not None:
        rollout = entry["rollout"] or {}
        rollout.update(outcome=outcome, detail=detail, time=when)
        if record.get("step") is not None and event == "rollout":
            rollout["step"] = int(record["step"]) + 1
        entry["rollout"] = rollout


def public(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The entries as printed (-o json/yaml): without the folding key."""
    return [{k: v for k, v in e.items() if not k.startswith("_")} for e in entries]


def versions_text(entry: dict[str, Any]) -> str:
    """`1`, `1, canary 2 at 10%`, `removed`."""
    if entry["removed"]:
        return "removed"
    text = str(entry["stable"] or "-")
    if entry["canary"]:
        traffic = f" at {entry['traffic']}%" if entry["traffic"] is not None else ""
        text += f", canary {entry['canary']}{traffic}"
    return text


def rollout_text(entry: dict[str, Any]) -> str:
    rollout = entry["rollout"]
    if not rollout:
        return "-"
    outcome, detail = str(rollout["outcome"]), str(rollout.get("detail", ""))
    if not detail or outcome not in ("rolled back", "aborted"):
        return outcome
    return detail if detail.startswith(outcome) else f"{outcome} ({detail})"  # why it ended, in full


def table(entries: list[dict[str, Any]]) -> list[str]:
    """The text view: one line per deployment, then its rollout's events indented."""
    rows = [("TIME", "MODEL", "COMMIT", "AUTHOR", "PR", "VERSIONS", "RESULT", "ROLLOUT")]
    for e in entries:
        author = str(e["author"]).split(" <", 1)[0] or "-"
        rows.append((str(e["time"] or "")[:19].replace("T", " "), e["model"], (e["commit"] or "working tree")[:12],
                     author, e["pullRequest"] or "-", versions_text(e), str(e["result"] or "-"), rollout_text(e)))
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]) - 1)]
    lines = []
    for index, row in enumerate(rows):
        lines.append("  ".join(str(c).ljust(w) for c, w in zip(row, widths, strict=False)) + "  " + str(row[-1]))
        if index:
            lines += [f"    {str(ev['time'] or '')[:19].replace('T', ' ')}  {ev['text']}"
                      for ev in entries[index - 1]["events"]]
    return lines


def target_of(repo: Path) -> str | None:
    """The target a model repo names (its RepositoryConfig), also when the repo does not validate;
    None when it cannot be read."""
    try:
        return load_desired(repo, resolve=False, keyless="skip").spec.config.name
    except ValidationFailed as exc:
        return exc.target or None
    except AgentError:
        return None


def read(audit_log: str, *, name: str | None, namespace: str | None, target: str | None
         ) -> tuple[list[dict[str, Any]], list[str]]:
    """The deployments in the log at `audit_log` (`-`: standard input), and notes for the user
    (lines that could not be read). AgentError when the log cannot be read."""
    bad: list[int] = []
    try:
        source: Any = sys.stdin.buffer if audit_log == "-" else audit_log
        found = deployments(read_records(source, skipped=bad.append), name=name, namespace=namespace, target=target)
    except OSError as exc:
        raise AgentError(f"cannot read the audit log {audit_log}: {exc.strerror or exc}") from None
    notes = []
    if bad:
        lines = ", ".join(str(n) for n in bad[:5]) + (" ..." if len(bad) > 5 else "")
        notes.append(f"{len(bad)} line(s) of {audit_log} are not audit records and were skipped (line {lines}); "
                     f"agent audit verify {audit_log} checks the log")
    return found, notes
