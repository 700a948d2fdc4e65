"""Backfill progress: blocks done of the total, percent, events per second and an ETA.

`ProgressEstimator` is pure (the caller passes the clock). Its rates are exponentially weighted
moving averages over time (half-life HALF_LIFE_S), each interval weighted by its length, and
bias-corrected: early on the estimate is the plain average rate so far (not a blend with an
initial zero, which is what makes naive ETAs start at hours), later the recent minutes count
most, so the ETA settles instead of jumping with every chunk (chunks vary in size and in events
per block). No ETA is given before MIN_SAMPLE_S seconds of measurements.

`BackfillLog` decides when to log: a round that starts at least BACKFILL_MIN_BLOCKS behind
begins a backfill, a line every PROGRESS_LOG_S seconds while it runs, and a summary once caught
up (only when a progress line was logged, so short catch-ups at the tip stay quiet).
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass

HALF_LIFE_S = 15.0
MIN_SAMPLE_S = 2.0
BACKFILL_MIN_BLOCKS = 50


@dataclass(frozen=True)
class Progress:
    done_blocks: int
    total_blocks: int
    percent: float
    blocks_per_s: float | None
    events_per_s: float | None
    eta_s: float | None  # None: not enough measurements yet
    events: int
    elapsed_s: float


class ProgressEstimator:
    def __init__(
        self,
        first_block: int,
        target: int,
        now: float,
        half_life_s: float = HALF_LIFE_S,
        min_sample_s: float = MIN_SAMPLE_S,
    ):
        if half_life_s <= 0:
            raise ValueError("half_life_s must be > 0")
        self.first_block = first_block
        self.target = max(target, first_block - 1)
        self.half_life_s = half_life_s
        self.min_sample_s = min_sample_s
        self.started = now
        self.block = first_block - 1  # last block committed
        self.events = 0
        self._t = now
        self._sample_block = self.block
        self._sample_events = 0
        self._block_acc = 0.0  # EWMA accumulators, biased toward 0 by the missing history
        self._event_acc = 0.0
        self._weight = 0.0  # 1 - 0.5 ** (measured time / half-life): the bias to divide out

    def retarget(self, target: int) -> None:
        """The chain moved on (a new round's head - confirmations)."""
        self.target = max(target, self.block)

    def update(self, now: float, block: int, events: int) -> None:
        """A chunk committed: `block` is now the last indexed block, `events` more events."""
        self.block = max(self.block, block)
        self.target = max(self.target, self.block)
        self.events += events
        dt = now - self._t
        if dt < 0.05:  # too short to measure: fold it into the next interval
            return
        blocks = self.block - self._sample_block
        new_events = self.events - self._sample_events
        keep = math.pow(0.5, dt / self.half_life_s)
        self._block_acc = keep * self._block_acc + (1 - keep) * blocks / dt
        self._event_acc = keep * self._event_acc + (1 - keep) * new_events / dt
        self._weight = keep * self._weight + (1 - keep)
        self._t, self._sample_block, self._sample_events = now, self.block, self.events

    @property
    def block_rate(self) -> float | None:
        return self._block_acc / self._weight if self._weight else None

    @property
    def event_rate(self) -> float | None:
        return self._event_acc / self._weight if self._weight else None

    def report(self, now: float) -> Progress:
        total = self.target - self.first_block + 1
        done = self.block - self.first_block + 1
        percent = 100.0 if total <= 0 else min(100.0, 100.0 * done / total)
        eta: float | None = None
        measured = self._t - self.started >= self.min_sample_s
        rate = self.block_rate
        if measured and rate is not None:
            left = self.target - self.block
            eta = 0.0 if left <= 0 else (left / rate if rate > 0 else None)
        return Progress(
            done_blocks=max(0, done),
            total_blocks=max(0, total),
            percent=percent,
            blocks_per_s=self.block_rate,
            events_per_s=self.event_rate,
            eta_s=eta,
            events=self.events,
            elapsed_s=now - self.started,
        )


def format_duration(seconds: float | None) -> str:
    """3725 -> "1h02m05s", 65 -> "1m05s", 4.2 -> "4s"; None -> "estimating"."""
    if seconds is None:
        return "estimating"
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h{minutes:02d}m{secs:02d}s"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def format_progress(p: Progress, last_block: int, target: int) -> str:
    rate = "?" if p.events_per_s is None else f"{p.events_per_s:,.0f}"
    blocks = "?" if p.blocks_per_s is None else f"{p.blocks_per_s:,.0f}"
    return (
        f"backfill: {p.done_blocks:,}/{p.total_blocks:,} blocks ({p.percent:.1f}%), at block "
        f"{last_block:,} of {target:,}; {rate} events/s, {blocks} blocks/s; "
        f"ETA {format_duration(p.eta_s)}"
    )


class BackfillLog:
    """Logs a backfill's progress (see the module doc). `interval` 0 turns it off."""

    def __init__(self, log: logging.Logger, interval: float):
        self.log = log
        self.interval = interval
        self.estimator: ProgressEstimator | None = None
        self._next_at = 0.0
        self.lines = 0

    def round_started(self, now: float, start: int, target: int) -> None:
        if self.interval <= 0:
            return
        if self.estimator is not None:
            self.estimator.retarget(target)
        elif target - start + 1 >= BACKFILL_MIN_BLOCKS:
            self.estimator = ProgressEstimator(start, target, now)
            self._next_at = now + self.interval
            self.lines = 0

    def committed(self, now: float, block: int, events: int) -> None:
        e = self.estimator
        if e is None:
            return
        e.update(now, block, events)
        if now >= self._next_at and e.block < e.target:
            self.log.info("%s", format_progress(e.report(now), e.block, e.target))
            self.lines += 1
            self._next_at = now + self.interval

    def caught_up(self, now: float) -> None:
        e, self.estimator = self.estimator, None
        if e is None or not self.lines:
            return
        p = e.report(now)
        average = p.events / p.elapsed_s if p.elapsed_s > 0 else 0.0
        self.log.info(
            "backfill done: %s blocks, %s events in %s (%s events/s on average)",
            f"{p.done_blocks:,}",
            f"{p.events:,}",
            format_duration(p.elapsed_s),
            f"{average:,.0f}",
        )
