"""The funding schedule and the send decision (pure)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.funding.decision import Attempt, FundingAction, MarketView, decide
from services.funding.schedule import (
    Window,
    is_due,
    next_window_at,
    overdue_seconds,
    seconds_to_next_window,
    wake_delay,
    window_index,
)
from shared.backoff import backoff_delay

H8 = 8 * 3600


def test_next_window_and_due() -> None:
    assert next_window_at(1_000, H8) == 1_000 + H8
    assert seconds_to_next_window(1_000, H8, 1_000) == H8
    assert seconds_to_next_window(1_000, H8, 1_000 + H8 - 1) == 1
    assert seconds_to_next_window(1_000, H8, 1_000 + H8 + 50) == 0
    assert not is_due(1_000, H8, 1_000 + H8 - 1)
    assert is_due(1_000, H8, 1_000 + H8)
    assert not is_due(1_000, H8, 1_000 + H8 + 4, grace=5)
    assert is_due(1_000, H8, 1_000 + H8 + 5, grace=5)
    assert overdue_seconds(1_000, H8, 1_000 + H8 + 7) == 7
    assert overdue_seconds(1_000, H8, 1_000) == 0
    w = Window(1_000, H8)
    assert w.opens_at == 1_000 + H8 and w.is_open(w.opens_at) and not w.is_open(w.opens_at - 1)
    assert w.seconds_to_open(1_000 + 100) == H8 - 100


def test_bad_interval_rejected() -> None:
    with pytest.raises(ValueError):
        next_window_at(0, 0)
    with pytest.raises(ValueError):
        window_index(5, 0, 0)


def test_wake_delay_clamps() -> None:
    # far from the window: capped by max_sleep (re-read the chain's clock)
    assert wake_delay(0, H8, 10, max_sleep=60) == 60
    # close: exactly until the window (+ grace)
    assert wake_delay(0, H8, H8 - 7, grace=3, max_sleep=60) == 10
    # already due but the latest block lags: never a hot loop
    assert wake_delay(0, H8, H8 + 100, min_sleep=0.5, max_sleep=60) == 0.5


def test_window_index_grid() -> None:
    anchor = 1_000
    assert window_index(anchor, anchor, H8) == 0
    assert window_index(anchor + H8 - 1, anchor, H8) == 0
    assert window_index(anchor + H8, anchor, H8) == 1
    assert window_index(anchor + 3 * H8 + 17, anchor, H8) == 3


@given(
    st.integers(min_value=1, max_value=10**6),
    st.lists(st.integers(min_value=0, max_value=10**6), min_size=1, max_size=30),
)
def test_updates_an_interval_apart_never_share_a_grid_cell(
    interval: int, delays: list[int]
) -> None:
    """The contract enforces >= interval between updates, so each grid cell holds at most one:
    counting updates per cell is a valid exactly-once check."""
    anchor = 10**9
    t = anchor
    cells = []
    for extra in delays:
        t = t + interval + extra
        cells.append(window_index(t, anchor, interval))
    assert len(cells) == len(set(cells))


# ---------------------------------------------------------------- decision


def _decide(view: MarketView, **kw: object) -> object:
    args: dict[str, object] = dict(
        is_leader=True, now=100.0, attempt=None, grace=0, max_sleep=60.0, min_sleep=1.0
    )
    args.update(kw)
    return decide(view, **args)  # type: ignore[arg-type]


def test_sends_when_due_and_leading() -> None:
    d = _decide(MarketView(0, H8, H8 + 3))
    assert d.action is FundingAction.SEND and "3s" in d.reason


def test_waits_until_the_window_plus_grace() -> None:
    d = _decide(MarketView(0, H8, H8 - 20), grace=5)
    assert d.action is FundingAction.WAIT and d.wake_in == 25
    d = _decide(MarketView(0, H8, H8 + 2), grace=5)
    assert d.action is FundingAction.WAIT and d.wake_in == 3


def test_standby_never_sends() -> None:
    d = _decide(MarketView(0, H8, H8 + 100), is_leader=False)
    assert d.action is FundingAction.STANDBY and d.wake_in == 60
    d = _decide(MarketView(0, H8, H8 - 10), is_leader=False)
    assert d.action is FundingAction.STANDBY and d.wake_in == 10


def test_backoff_after_a_failed_attempt_in_the_same_window() -> None:
    attempt = Attempt(window=0, sent=False, retry_at=400.0, failures=1, reason="StalePrice(..)")
    d = _decide(MarketView(0, H8, H8 + 10), attempt=attempt, now=100.0)
    assert d.action is FundingAction.BACKOFF and d.wake_in == 60 and "StalePrice" in d.reason
    d = _decide(MarketView(0, H8, H8 + 10), attempt=attempt, now=390.0)
    assert d.action is FundingAction.BACKOFF and d.wake_in == 10
    # the back-off is over: try again
    assert (
        _decide(MarketView(0, H8, H8 + 10), attempt=attempt, now=400.0).action is FundingAction.SEND
    )


def test_sent_window_is_not_sent_again() -> None:
    attempt = Attempt(window=0, sent=True, retry_at=500.0)
    d = _decide(MarketView(0, H8, H8 + 10), attempt=attempt, now=100.0)
    assert d.action is FundingAction.IN_FLIGHT


def test_an_attempt_for_an_older_window_does_not_block_the_next() -> None:
    attempt = Attempt(window=0, sent=True, retry_at=10**9, failures=3)
    view = MarketView(H8 + 5, H8, 2 * H8 + 5)
    assert _decide(view, attempt=attempt).action is FundingAction.SEND


def test_backoff_delay_doubles_and_caps() -> None:
    assert backoff_delay(0, 300, 3600) == 0
    assert [backoff_delay(n, 300, 3600) for n in (1, 2, 3, 4, 5)] == [300, 600, 1200, 2400, 3600]
    assert backoff_delay(500, 1, 10) == 10
