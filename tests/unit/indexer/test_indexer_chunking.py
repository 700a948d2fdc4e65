from __future__ import annotations

import pytest

from services.indexer.chunking import ChunkPolicy, RangeOutcome


def test_starts_at_nine_and_doubles_up_to_max() -> None:
    p = ChunkPolicy(initial=9, maximum=100)
    assert p.size == 9
    sizes = []
    for _ in range(6):
        p.on_success(logs=10)
        sizes.append(p.size)
    assert sizes == [18, 36, 72, 100, 100, 100]


def test_dense_answers_hold_the_size() -> None:
    p = ChunkPolicy(initial=16, maximum=1000, target_logs=500)
    p.on_success(logs=500)
    assert p.size == 16
    p.on_success(logs=499)
    assert p.size == 32


@pytest.mark.parametrize(
    "outcome", [RangeOutcome.RANGE_TOO_LARGE, RangeOutcome.TOO_MANY_RESULTS, RangeOutcome.TIMEOUT]
)
def test_shrinking_errors_halve_down_to_minimum(outcome: RangeOutcome) -> None:
    p = ChunkPolicy(initial=9, maximum=2000)
    for _ in range(4):
        p.on_success(0)
    assert p.size == 144
    p.on_error(outcome)
    assert p.size == 72
    for _ in range(20):
        p.on_error(outcome)
    assert p.size == 1


@pytest.mark.parametrize("outcome", [RangeOutcome.RANGE_TOO_LARGE, RangeOutcome.TOO_MANY_RESULTS])
def test_asked_for_less_at_the_smallest_size_it_backs_off(outcome: RangeOutcome) -> None:
    """At one block already, "ask for less" cannot be obeyed: wait, growing, never spin."""
    p = ChunkPolicy(initial=1, minimum=1)
    delays = []
    for _ in range(4):
        p.on_error(outcome)
        delays.append(p.delay)
    assert p.size == 1
    assert delays[0] > 0 and delays[-1] > delays[0]
    p.on_success(1)
    assert p.delay == 0.0


def test_range_error_retries_without_wait() -> None:
    p = ChunkPolicy()
    p.on_error(RangeOutcome.RANGE_TOO_LARGE)
    assert p.delay == 0.0
    p.on_error(RangeOutcome.TIMEOUT)
    assert p.delay > 0


def test_rate_limit_keeps_size_and_backs_off_exponentially() -> None:
    p = ChunkPolicy(initial=9, base_delay=0.1, max_delay=5.0, jitter=0.0)
    p.on_success(0)
    size = p.size
    delays = []
    for _ in range(8):
        p.on_error(RangeOutcome.RATE_LIMITED)
        delays.append(p.delay)
    assert p.size == size
    assert delays[:4] == pytest.approx([0.1, 0.2, 0.4, 0.8])
    assert delays[-1] == 5.0
    p.on_success(0)
    assert p.delay == 0.0 and p.consecutive_failures == 0


def test_retry_after_is_honoured() -> None:
    p = ChunkPolicy(base_delay=0.1, jitter=0.0)
    p.on_error(RangeOutcome.RATE_LIMITED, retry_after=3.0)
    assert p.delay == 3.0


def test_transient_keeps_size() -> None:
    p = ChunkPolicy(initial=9)
    p.on_error(RangeOutcome.TRANSIENT)
    assert p.size == 9 and p.delay > 0


def test_next_range_never_passes_target() -> None:
    p = ChunkPolicy(initial=9)
    assert p.next_range(0, 100) == (0, 8)
    assert p.next_range(95, 100) == (95, 100)
    assert p.next_range(101, 100) is None


def test_invalid_bounds_rejected() -> None:
    with pytest.raises(ValueError):
        ChunkPolicy(initial=10, maximum=5)
    with pytest.raises(ValueError):
        ChunkPolicy().on_error(RangeOutcome.OK)
