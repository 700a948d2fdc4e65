"""Whether to send `updateFundingRate` for a market now (pure).

Send only when all hold: this replica is the leader, the window is open on the chain (plus the
grace delay), and nothing was already tried for this window that is still backing off. A
window is named by the `lastFundingTime` it follows (see schedule.py), so an attempt recorded
for window L stops blocking as soon as the chain shows a newer update.

Attempts are rate-limited with the monotonic clock (`now`), not chain time: a revert is our
problem to back off from, however fast the chain's clock moves.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from services.funding.schedule import is_due, overdue_seconds, wake_delay


class FundingAction(StrEnum):
    SEND = "send"
    WAIT = "wait"  # the window is not open yet (or the grace delay runs)
    STANDBY = "standby"  # another replica leads
    BACKOFF = "backoff"  # the last attempt for this window failed; waiting before the next
    IN_FLIGHT = "in_flight"  # a transaction for this window was sent; waiting for the chain


@dataclass(frozen=True)
class MarketView:
    last_funding_time: int
    interval: int
    chain_time: int


@dataclass(frozen=True)
class Attempt:
    """What this replica last did for a window."""

    window: int  # the lastFundingTime the attempt was made against
    sent: bool  # a transaction was broadcast (gas may have been spent)
    retry_at: float  # monotonic time before which this window is not tried again
    failures: int = 0  # consecutive failures for this window
    reason: str = ""


@dataclass(frozen=True)
class Decision:
    action: FundingAction
    reason: str
    wake_in: float  # seconds to sleep before deciding again (events may wake earlier)


def decide(
    view: MarketView,
    *,
    is_leader: bool,
    now: float,
    attempt: Attempt | None,
    grace: int,
    max_sleep: float,
    min_sleep: float,
) -> Decision:
    due = is_due(view.last_funding_time, view.interval, view.chain_time, grace)
    until_due = wake_delay(
        view.last_funding_time,
        view.interval,
        view.chain_time,
        grace=grace,
        min_sleep=min_sleep,
        max_sleep=max_sleep,
    )
    if not is_leader:
        return Decision(
            FundingAction.STANDBY, "not the leader", until_due if not due else max_sleep
        )
    if not due:
        return Decision(FundingAction.WAIT, "window not open yet", until_due)
    if attempt is not None and attempt.window == view.last_funding_time and now < attempt.retry_at:
        wait = max(min_sleep, min(attempt.retry_at - now, max_sleep))
        if attempt.sent:
            return Decision(FundingAction.IN_FLIGHT, "already sent for this window", wait)
        return Decision(
            FundingAction.BACKOFF,
            f"backing off after: {attempt.reason or 'a failed attempt'}",
            wait,
        )
    late = overdue_seconds(view.last_funding_time, view.interval, view.chain_time)
    return Decision(FundingAction.SEND, f"window open for {late}s", 0.0)
