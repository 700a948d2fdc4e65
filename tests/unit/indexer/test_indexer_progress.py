"""Backfill progress and its ETA (pure; the clock is passed in)."""

from __future__ import annotations

import itertools
import logging

import pytest

from services.indexer.progress import (
    BACKFILL_MIN_BLOCKS,
    BackfillLog,
    ProgressEstimator,
    format_duration,
    format_progress,
)


def test_no_eta_before_enough_measurements_then_the_true_one_at_a_steady_rate() -> None:
    e = ProgressEstimator(first_block=1, target=100_000, now=0.0)
    e.update(0.5, 500, 1500)
    early = e.report(0.5)
    assert early.eta_s is None and format_duration(early.eta_s) == "estimating"
    assert early.done_blocks == 500 and early.total_blocks == 100_000
    assert early.percent == pytest.approx(0.5)
    t, block = 0.5, 500
    while t < 10:  # 1,000 blocks per second, 3 events per block
        t += 0.5
        block += 500
        e.update(t, block, 1500)
    p = e.report(t)
    assert p.blocks_per_s == pytest.approx(1000) and p.events_per_s == pytest.approx(3000)
    assert p.eta_s == pytest.approx((100_000 - block) / 1000)


def test_eta_does_not_start_at_hours_and_settles_after_a_slow_start() -> None:
    """Chunks start small and grow (the chunk policy); the first ETA is of the order of the
    real remaining time, and later ones converge on it instead of jumping around."""
    e = ProgressEstimator(first_block=1, target=200_000, now=0.0)
    t, block, span, etas = 0.0, 0, 9, []
    while block < 200_000:
        t += 0.25
        span = min(1000, span * 2)  # 4,000 blocks/s once grown
        block = min(200_000, block + span)
        e.update(t, block, span)
        eta = e.report(t).eta_s
        if eta is not None:
            etas.append((t, eta, (200_000 - block) / 4000))
    first_t, first_eta, first_truth = etas[0]
    assert first_t <= 2.5 and first_eta < 3 * first_truth + 5  # not hours
    late = [(eta, truth) for t, eta, truth in etas if t > 0.6 * etas[-1][0]]
    assert all(abs(eta - truth) <= 0.25 * truth + 2 for eta, truth in late), late[:5]
    # it settles: from the first estimate on it only comes down, never back up
    assert all(b[1] <= a[1] + 0.01 for a, b in itertools.pairwise(etas)), etas[:8]


def test_rates_follow_a_change_with_the_half_life() -> None:
    e = ProgressEstimator(first_block=1, target=10**9, now=0.0, half_life_s=10.0)
    for i in range(1, 41):  # 20 s at 1,000 blocks/s
        e.update(i * 0.5, i * 500, 0)
    for i in range(1, 21):  # then 10 s at 3,000 blocks/s: one half-life
        e.update(20 + i * 0.5, 20_000 + i * 1500, 0)
    # the last half-life weighs as much as everything before it (bias-corrected: the first
    # 20 s had weight 1 - 0.5**2 = 0.75, halved since)
    assert e.block_rate == pytest.approx((0.375 * 1000 + 0.5 * 3000) / 0.875)


def test_retarget_and_bounds() -> None:
    e = ProgressEstimator(first_block=101, target=200, now=0.0)
    e.update(1.0, 150, 10)
    e.retarget(400)
    p = e.report(1.0)
    assert (p.done_blocks, p.total_blocks) == (50, 300)
    e.update(3.0, 500, 10)  # past the target: the chain moved; never above 100 %
    assert e.report(3.0).percent == 100.0 and e.report(3.0).eta_s == 0.0
    with pytest.raises(ValueError):
        ProgressEstimator(1, 2, 0.0, half_life_s=0)


def test_format() -> None:
    assert format_duration(4.4) == "4s" and format_duration(65) == "1m05s"
    assert format_duration(3725) == "1h02m05s"
    e = ProgressEstimator(first_block=1, target=50_000, now=0.0)
    e.update(3.0, 12_345, 40_000)
    line = format_progress(e.report(3.0), 12_345, 50_000)
    assert line.startswith("backfill: 12,345/50,000 blocks (24.7%), at block 12,345 of 50,000;")
    assert "13,333 events/s" in line and "ETA 9s" in line


class Clock:
    def __init__(self) -> None:
        self.t = 0.0


def test_log_lines_only_for_a_backfill_at_the_interval(caplog: pytest.LogCaptureFixture) -> None:
    log = logging.getLogger("test.progress")
    b = BackfillLog(log, interval=5.0)
    with caplog.at_level(logging.INFO, logger="test.progress"):
        b.round_started(0.0, 1, BACKFILL_MIN_BLOCKS - 1)  # a short catch-up: no backfill
        b.committed(10.0, BACKFILL_MIN_BLOCKS - 1, 3)
        b.caught_up(10.0)
        assert caplog.records == []
        b.round_started(20.0, 100, 10_099)
        for i in range(1, 40):
            b.committed(20.0 + i * 0.5, 100 + i * 250, 100)
        lines = [r.getMessage() for r in caplog.records]
        assert len(lines) == 3 and all(line.startswith("backfill: ") for line in lines)
        b.round_started(40.0, 9_851, 10_199)  # the head moved meanwhile: same backfill
        b.committed(41.0, 10_199, 10)
        b.caught_up(41.0)
        assert (
            caplog.records[-1].getMessage().startswith("backfill done: 10,100 blocks, 3,910 events")
        )
        assert b.estimator is None


def test_interval_zero_turns_it_off(caplog: pytest.LogCaptureFixture) -> None:
    b = BackfillLog(logging.getLogger("test.progress.off"), interval=0)
    with caplog.at_level(logging.INFO):
        b.round_started(0.0, 1, 10**6)
        b.committed(100.0, 10**5, 10)
        b.caught_up(200.0)
    assert caplog.records == [] and b.estimator is None
