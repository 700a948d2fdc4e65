"""Block-range sizing for eth_getLogs: start small, grow while the provider answers, halve on the
errors that mean "ask for less", back off on rate limiting.

Pure logic; the sync loop feeds it outcomes and reads `size` and `delay`.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from enum import Enum

from shared.backoff import backoff_delay


class RangeOutcome(Enum):
    OK = "ok"
    RANGE_TOO_LARGE = "range_too_large"  # provider refuses the block span
    TOO_MANY_RESULTS = "too_many_results"  # provider refuses the result count / size
    TIMEOUT = "timeout"  # no answer in time: likely too much work for one call
    RATE_LIMITED = "rate_limited"  # HTTP 429 or a rate-limit JSON-RPC error
    TRANSIENT = "transient"  # 5xx, connection reset, truncated body: same request again


SHRINKING = frozenset(
    {RangeOutcome.RANGE_TOO_LARGE, RangeOutcome.TOO_MANY_RESULTS, RangeOutcome.TIMEOUT}
)


@dataclass
class ChunkPolicy:
    """Chunk size in blocks.

    - OK: the size doubles (up to `maximum`) while the answer carried fewer than `target_logs`
      logs; at or above it the size holds, so a dense range does not keep growing into the
      provider's result cap.
    - RANGE_TOO_LARGE / TOO_MANY_RESULTS / TIMEOUT: the size halves (down to `minimum`). The
      same start block is retried with the smaller size, without waiting; at `minimum`
      already, it backs off as for a transient error instead.
    - RATE_LIMITED: the size holds; the caller waits `delay` seconds, which doubles on each
      consecutive 429 (with jitter) up to `max_delay`, or the provider's Retry-After if larger.
    - TRANSIENT: the size holds; a short, growing wait.

    Any OK resets the wait.
    """

    initial: int = 9
    maximum: int = 2000
    minimum: int = 1
    target_logs: int = 10_000
    base_delay: float = 0.2
    max_delay: float = 30.0
    jitter: float = 0.2
    size: int = field(init=False)
    delay: float = field(init=False, default=0.0)
    _failures: int = field(init=False, default=0)
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        if self.minimum < 1 or self.initial < self.minimum or self.maximum < self.initial:
            raise ValueError("need 1 <= minimum <= initial <= maximum")
        self.size = self.initial
        self._rng = random.Random()

    def on_success(self, logs: int) -> None:
        self._failures = 0
        self.delay = 0.0
        if logs < self.target_logs:
            self.size = min(self.maximum, self.size * 2)

    def on_error(self, outcome: RangeOutcome, retry_after: float | None = None) -> None:
        if outcome is RangeOutcome.OK:
            raise ValueError("use on_success for OK")
        self._failures += 1
        if outcome in SHRINKING and self.size > self.minimum:
            self.size = max(self.minimum, self.size // 2)
            # A timeout also deserves a short pause; range errors retry at once.
            self.delay = self.base_delay if outcome is RangeOutcome.TIMEOUT else 0.0
            return
        # Rate limits, transient errors, and "ask for less" at the smallest size already (the
        # provider means something else, or cannot answer even that): back off, never spin.
        backoff = backoff_delay(self._failures, self.base_delay, self.max_delay)
        backoff *= 1 + self._rng.uniform(-self.jitter, self.jitter)
        if retry_after is not None:
            backoff = max(backoff, min(retry_after, self.max_delay))
        self.delay = max(0.0, backoff)

    def next_range(self, start: int, last_allowed: int) -> tuple[int, int] | None:
        """The next [from, to] starting at `start`, never past `last_allowed`; None when caught up."""
        if start > last_allowed:
            return None
        return start, min(last_allowed, start + self.size - 1)

    @property
    def consecutive_failures(self) -> int:
        return self._failures
