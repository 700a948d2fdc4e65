"""The funding schedule (pure): when is a market's next funding window, is it due now?

The contract's schedule is relative: `updateFundingRate` may be called once
`block.timestamp >= lastFundingTime + fundingInterval`, and the call sets `lastFundingTime` to
the block's timestamp. A *window* is therefore named by the `lastFundingTime` it follows: the
window opened by an update at time L is `[L + interval, ...)` and closes when the next update
lands. "One update per window" means: for a given L, at most one transaction is sent.

All times are chain time (block timestamps, seconds), never the wall clock: tests move chain
time with `evm_increaseTime`, and on a real chain the two agree to within a block.

`window_index` maps a timestamp onto a fixed grid `anchor + k * interval`; because the
contract enforces at least one interval between updates, a grid cell can hold at most one
update, and "exactly one update in cell k" is how the tests check that nothing was missed or
repeated.
"""

from __future__ import annotations

from dataclasses import dataclass


def next_window_at(last_funding_time: int, interval: int) -> int:
    """Chain time at which the next funding window opens."""
    if interval <= 0:
        raise ValueError("funding interval must be positive")
    return last_funding_time + interval


def seconds_to_next_window(last_funding_time: int, interval: int, chain_time: int) -> int:
    """Seconds until the next window opens; 0 when it is already open."""
    return max(0, next_window_at(last_funding_time, interval) - chain_time)


def overdue_seconds(last_funding_time: int, interval: int, chain_time: int) -> int:
    """How long the open window has been waiting for an update; 0 when it is not open yet."""
    return max(0, chain_time - next_window_at(last_funding_time, interval))


def is_due(last_funding_time: int, interval: int, chain_time: int, grace: int = 0) -> bool:
    """True once the window is open and `grace` seconds have passed since it opened."""
    return chain_time >= next_window_at(last_funding_time, interval) + max(0, grace)


def window_index(timestamp: int, anchor: int, interval: int) -> int:
    """The grid cell `floor((timestamp - anchor) / interval)` that `timestamp` falls in."""
    if interval <= 0:
        raise ValueError("funding interval must be positive")
    return (timestamp - anchor) // interval


def wake_delay(
    last_funding_time: int,
    interval: int,
    chain_time: int,
    *,
    grace: int = 0,
    min_sleep: float = 0.0,
    max_sleep: float,
) -> float:
    """Seconds to sleep before looking again: until the window opens (plus grace), but never
    longer than `max_sleep` (chain and wall clocks drift; time can jump on a test chain) nor
    shorter than `min_sleep` (no hot loop while the chain's latest block lags the wall clock)."""
    remaining = next_window_at(last_funding_time, interval) + max(0, grace) - chain_time
    return float(min(max(remaining, min_sleep), max_sleep))


@dataclass(frozen=True)
class Window:
    """The funding window that follows the update at `last_funding_time`."""

    last_funding_time: int
    interval: int

    @property
    def opens_at(self) -> int:
        return next_window_at(self.last_funding_time, self.interval)

    def seconds_to_open(self, chain_time: int) -> int:
        return seconds_to_next_window(self.last_funding_time, self.interval, chain_time)

    def is_open(self, chain_time: int) -> bool:
        return chain_time >= self.opens_at
