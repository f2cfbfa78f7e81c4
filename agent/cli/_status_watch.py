"""`agent status` and `agent status --watch`: one status document, or one per change.

A status is taken from the local checkout and the cluster (agent.engine's Engine.status). When
the checkout does not validate, the cluster's live state is still shown (agent.status_live) with the
checkout's problems as a note, and the exit code is 2: what runs is visible, but whether it is
synced with Git is not.

`--watch` is kubectl's `-w` habit: the status is taken again every `interval` seconds (a few
LISTs and GETs, no write) and printed when something in it changed (not the ages and the
durations that grow by themselves); text a table per change, json one document per line
(JSON Lines), yaml one document per change. Ctrl-C (or SIGTERM) ends it, also in the middle of
a read, exit 0. A cluster that stops answering is said once on stderr and asked again at the
next tick.
"""

from __future__ import annotations

import contextlib
import json
import re
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from agent.cluster import ClusterError
from agent.engine import Desired, Engine, status_ok
from agent.errors import AgentError, ValidationFailed
from agent.status_live import live_status, local_problems

EXIT_OK, EXIT_NOT_GOOD, EXIT_INVALID = 0, 1, 2


@dataclass
class Taken:
    """One status: the document and the exit code it means (0 all good, 1 not, 2 invalid checkout)."""

    document: dict[str, Any]
    code: int
    problems: ValidationFailed | None = None  # the checkout's problems when it did not validate


def take(load: Callable[[], Desired], engine: Engine, *, allow_unknown: bool = False,
         keep: Callable[[dict[str, Any]], bool] | None = None, warn: Callable[[str], None] | None = None) -> Taken:
    """The status of the checkout `load()` reads (agent.engine.load_desired), or of the cluster
    alone when it does not validate but names its target; ValidationFailed when it names none.
    `keep(model)`: only the models it accepts (--model, -n)."""
    try:
        desired = load()
    except ValidationFailed as exc:
        if not exc.target:
            raise
        document = live_status(engine.cluster, exc.target, local_problems(exc), engine.options.inventory_namespace)
        return Taken(_kept(document, keep), EXIT_INVALID, exc)
    document = _kept(engine.status(desired, warn=warn), keep)
    return Taken(document, EXIT_OK if status_ok(document, allow_unknown) else EXIT_NOT_GOOD)


def _kept(document: dict[str, Any], keep: Callable[[dict[str, Any]], bool] | None) -> dict[str, Any]:
    return document if keep is None else {**document, "models": [m for m in document["models"] if keep(m)]}


_GROWING = re.compile(r"\b\d+(?:h\d+m|m\d+s|s)\b")  # 40s, 2m5s, 1h3m: an age, not a change
_AGES = ("ageSeconds", "sinceSeconds")


def fingerprint(document: dict[str, Any]) -> str:
    """The document without what changes by itself as time passes: what --watch compares."""
    def strip(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: strip(v) for k, v in value.items() if k not in _AGES}
        if isinstance(value, list):
            return [strip(v) for v in value]
        if isinstance(value, str):
            return _GROWING.sub("", value)
        return value

    return json.dumps(strip(document), sort_keys=True)


def watch(once: Callable[[], Taken], show: Callable[[Taken], None], *, interval: float = 2.0,
          stop: threading.Event | None = None, warn: Callable[[str], None] | None = None) -> int:
    """Show a status, then another whenever it changed, every `interval` seconds until `stop` is
    set (Ctrl-C or SIGTERM set it when not given). 0 at the end."""
    stop = stop or _stopped_by_signals()
    with contextlib.suppress(KeyboardInterrupt):  # Ctrl-C, also in the middle of a read: nothing to undo
        _loop(once, show, interval, stop, warn)
    return EXIT_OK


def _loop(once: Callable[[], Taken], show: Callable[[Taken], None], interval: float, stop: threading.Event,
          warn: Callable[[str], None] | None) -> None:
    last, error = "", ""
    while not stop.is_set():
        try:
            taken = once()
        except AgentError as exc:  # once a status was shown, one that cannot be taken is asked again
            if not last and not isinstance(exc, ClusterError):
                raise  # the first status could not be taken (a bad --model, a checkout naming no target): exit 2
            if str(exc) != error and warn is not None:
                warn(f"{exc}; trying again every {interval:g}s")
            error = str(exc)
        else:
            error = ""
            seen = fingerprint(taken.document)
            if seen != last:
                show(taken)
                sys.stdout.flush()
                last = seen
        stop.wait(interval)


def _stopped_by_signals() -> threading.Event:
    """An event set by Ctrl-C (SIGINT) or SIGTERM, which also interrupt what runs: exit 0."""
    stop = threading.Event()

    def on_signal(_signum: int, _frame: object) -> None:
        stop.set()
        raise KeyboardInterrupt  # ends a read in flight too: a watch only reads the cluster

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    return stop
