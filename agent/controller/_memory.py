"""The long-lived state out of the cyclic garbage collector's way.

A controller holds its desired state and watch cache for a long time: at N = 1,000 models that is
hundreds of thousands of containers, and every full collection walks them all (0.4-0.9 s with
the GIL held: a UI page, a webhook, a watch thread stall meanwhile; bench/ui.py measured the
overview's p95 at 328 ms from those pauses alone, 73 ms without). So once a new desired state
has been applied, `settle()` collects once with everything in view (what an earlier settle froze
too, so garbage cycles from the previous state are freed, not kept) and freezes what is left
(`gc.freeze`): later collections walk only what was allocated since. Process-wide (the
collector is), at most once per `MIN_INTERVAL` for all the controllers of a fleet."""

from __future__ import annotations

import gc
import threading
import time

MIN_INTERVAL = 30.0  # seconds between two settles of the process

_lock = threading.Lock()
_last = [float("-inf")]


def settle(now: float | None = None) -> bool:
    """Collect and freeze (True), unless another settle ran within MIN_INTERVAL."""
    now = time.monotonic() if now is None else now
    with _lock:
        if now - _last[0] < MIN_INTERVAL:
            return False
        _last[0] = now
        gc.unfreeze()
        gc.collect()
        gc.freeze()
    return True
