"""Positive signs that an in-process controller had its chance to act, read from its /metrics.

A test that asserts something did *not* happen (no second Job, the canary stays, nothing
deployed) first waits for one of these, then asserts the absence: a fixed sleep passes when the
code is wrong but slow, and wastes time when it is right. The loop runs one pass at a time, so a
pass that is counted as finished after another one finished also began after it.
"""

from __future__ import annotations

from agent.controller import Controller
from tests.integration.conftest import wait_until

RECONCILES = "modelops_agent_reconcile_duration_seconds_count"  # one per finished pass, by trigger
SYNCED_AT = "modelops_agent_last_synced_timestamp_seconds"  # Unix time of the last successful pass


def sample(controller: Controller, name: str) -> float:
    """The sum of the series `name` (every label set) in the controller's /metrics exposition."""
    total = 0.0
    for line in controller.metrics.exposition().decode().splitlines():
        series, _, value = line.rpartition(" ")
        if series == name or series.startswith(name + "{"):
            total += float(value)
    return total


def passes(controller: Controller) -> int:
    """Passes the controller has finished, whatever triggered them."""
    return int(sample(controller, RECONCILES))


def wait_passes(controller: Controller, n: int, what: str, timeout: float = 60.0) -> None:
    """Wait until `n` passes that began after this call have finished (one more is awaited, as
    the pass running at the call may have begun before it)."""
    seen = passes(controller)
    wait_until(lambda: passes(controller) >= seen + n + 1, f"{n} more passes ({what})", timeout)


def wait_pass_after(controller: Controller, when: float, what: str, timeout: float = 60.0) -> None:
    """Wait until a pass that began at Unix time `when` or later has finished: a successful pass
    finished after `when`, then one more (which began after that one ended)."""
    wait_until(lambda: sample(controller, SYNCED_AT) >= when, f"a successful pass after the given time ({what})",
               timeout)
    wait_passes(controller, 0, what, timeout)
