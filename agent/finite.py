"""One rule for every number the agent takes from outside: a value that is not finite (NaN, +Inf,
-Inf) never passes a check.

NaN compares false with every bound, so `value < min` lets it through; +Inf passes any `min` and
-Inf any `max`. So every comparison of an outside number with a bound goes through `within`,
which does not judge such a value at all. What "not judged" means is the caller's: where data
may be missing (a rollout's analysis from Prometheus) the step holds; where the number is
configuration or a record (Git, a registry's run metrics, a stored rollout state) it is an
error. Pure, and imports nothing of the agent, so the pure core can use it.
"""

from __future__ import annotations

import math

__all__ = ["finite", "shown", "within"]


def finite(value: object) -> float | None:
    """`value` as a float when it is a finite real number (an int or a float, never a bool);
    None for anything else: NaN, +Inf, -Inf, None, a string."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int too large for a float
        return None
    return number if math.isfinite(number) else None


def shown(value: float) -> str:
    """A number for people: NaN, +Inf and -Inf as Prometheus writes them, anything else as %g."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return f"{value:g}"


def within(value: object, low: float | None = None, high: float | None = None) -> bool | None:
    """True when `value` is within [low, high] (a bound of None is no bound), False when it is
    outside, None when `value` or a bound is not a finite number: not judged, never a pass."""
    number = finite(value)
    if number is None or any(b is not None and finite(b) is None for b in (low, high)):
        return None
    if low is not None and number < low:
        return False
    return not (high is not None and number > high)
