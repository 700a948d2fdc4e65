"""The one exponential back-off every retry loop of the services uses."""

from __future__ import annotations

import random


def backoff_delay(failures: int, initial: float, cap: float, jitter: float = 0.0) -> float:
    """Seconds to wait after `failures` failures in a row: initial, 2 x initial, 4 x initial,
    ... up to `cap`; 0 before any failure. With `jitter` (a fraction), the delay is spread by
    +- that much so that replicas do not retry in step (it may then pass `cap` by as much)."""
    if failures <= 0:
        return 0.0
    delay = float(min(cap, initial * 2 ** min(failures - 1, 60)))
    if jitter:
        delay *= random.uniform(1.0 - jitter, 1.0 + jitter)
    return delay
