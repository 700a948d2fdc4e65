"""What an attempt's result does to a market's schedule (no I/O): the attempt recorded for the
window, the back-off before the next try, the counters and the log line. Used by the funding
updater (services/funding/updater.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from services.funding import metrics
from services.funding.chain import MarketRef, MarketSnapshot
from services.funding.decision import Attempt, Decision, backoff_delay
from services.funding.rates import format_duration

log = logging.getLogger("perpex.funding")
TOO_EARLY = "FundingTooEarly"


class Outcome(StrEnum):
    CONFIRMED = "confirmed"  # our transaction updated the funding rate
    ALREADY_UPDATED = "already_updated"  # the simulation shows someone else updated first
    REVERTED = "reverted"  # the simulation reverted for another reason: nothing sent
    MINED_REVERTED = "mined_reverted"  # sent, mined, reverted: gas spent
    NOT_LEADER = "not_leader"  # leadership did not hold at the last check
    FENCED = "fenced"  # waited for the wallet's in-flight transactions; re-read first
    FAILED = "failed"  # not sent (RPC failure after retries, insufficient balance)
    UNKNOWN = "unknown"  # sent, outcome unknown (timeout, nonce taken)
    STOPPING = "stopping"  # shutting down: no new transaction is started


@dataclass(frozen=True)
class UpdaterConfig:
    grace_s: int = 5
    max_sleep_s: float = 60.0
    min_sleep_s: float = 1.0
    revert_backoff_s: float = 300.0
    revert_backoff_max_s: float = 3600.0
    error_backoff_max_s: float = 60.0
    expected_interval_s: int | None = None
    shutdown_timeout_s: float = 30.0
    balance_check_s: float = 300.0
    fence_timeout_s: float = 180.0

    @property
    def full_read_every_s(self) -> float:
        """Re-read the whole market state (not only the clock) at least this often."""
        return 10 * self.max_sleep_s


@dataclass
class MarketState:
    ref: MarketRef
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    snapshot: MarketSnapshot | None = None
    read_at: float = 0.0  # monotonic time of the last chain read (full or clock-only)
    full_read_at: float = 0.0
    needs_full_read: bool = True
    last_read_full: bool = False
    attempt: Attempt | None = None
    decision: Decision | None = None
    error_failures: int = 0
    last_error: str | None = None
    last_outcome: Outcome | None = None
    # Who made the updates seen lately: lastFundingTime -> ("us" | "other", tx hash or None)
    updates: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    our_last_tx: str | None = None  # confirmed; names the next update seen if nothing else does
    sent: int = 0
    confirmed: int = 0
    reverts: int = 0
    events: int = 0
    interval_warned: int | None = None
    heartbeat: float = field(default_factory=time.monotonic)


def simulation_reverted(
    config: UpdaterConfig, state: MarketState, window: int, reason: str, failures: int, now: float
) -> Outcome:
    pair = state.ref.pair
    if reason.startswith(TOO_EARLY):
        # Someone else's update landed between our read and the simulation.
        log.info("%s: already updated by someone else (%s); nothing sent", pair, reason)
        state.attempt = Attempt(
            window, sent=False, retry_at=now + config.max_sleep_s, reason=reason
        )
        return Outcome.ALREADY_UPDATED
    failures += 1
    delay = backoff_delay(failures, config.revert_backoff_s, config.revert_backoff_max_s)
    state.reverts += 1
    state.last_error = f"reverts: {reason}"
    metrics.instruments().reverts.add(1, {"market": pair, "reason": error_name(reason)})
    log.error(
        "%s: updateFundingRate would revert: %s; nothing sent; next try in %s unless the "
        "window changes first",
        pair,
        reason,
        format_duration(delay),
    )
    state.attempt = Attempt(window, False, now + delay, failures, reason)
    return Outcome.REVERTED


def mined_reverted(
    config: UpdaterConfig,
    state: MarketState,
    window: int,
    reason: str,
    tx_hash: str | None,
    failures: int,
    now: float,
) -> Outcome:
    pair = state.ref.pair
    failures += 1
    delay = backoff_delay(failures, config.revert_backoff_s, config.revert_backoff_max_s)
    state.reverts += 1
    state.last_error = f"mined but reverted: {reason}"
    metrics.instruments().reverts.add(1, {"market": pair, "reason": error_name(reason)})
    log.error(
        "%s: updateFundingRate tx %s was mined but reverted: %s; next try in %s unless the "
        "window changes first",
        pair,
        tx_hash,
        reason,
        format_duration(delay),
    )
    state.attempt = Attempt(window, True, now + delay, failures, reason)
    return Outcome.MINED_REVERTED


def failed(
    config: UpdaterConfig, state: MarketState, window: int, why: str, failures: int, now: float
) -> Outcome:
    failures += 1
    delay = backoff_delay(failures, max(config.min_sleep_s, 1.0), config.error_backoff_max_s)
    state.last_error = why
    log.error(
        "%s: updateFundingRate not sent: %s; next try in %s",
        state.ref.pair,
        why,
        format_duration(delay),
    )
    state.attempt = Attempt(window, False, now + delay, failures, why)
    return Outcome.FAILED


def remember(state: MarketState, last_funding_time: int, by: str, tx: str | None) -> None:
    state.updates[last_funding_time] = (by, tx)
    while len(state.updates) > 16:
        del state.updates[min(state.updates)]


def error_name(reason: str) -> str:
    """`StalePrice(0x.., 1, 3600)` -> `StalePrice` (a bounded metric label)."""
    return reason.split("(", 1)[0].strip()[:64] or "unknown"


def market_report(state: MarketState, now: float) -> dict[str, Any]:
    """A market's schedule as `perpex funding status` and the status endpoint show it."""
    out: dict[str, Any] = {"market": state.ref.pair, "market_id": state.ref.market_id_hex}
    if state.snapshot is not None:
        out.update(state.snapshot.status().as_dict())
    by, tx = _last_update_by(state)
    out.update(
        {
            "decision": state.decision.action.value if state.decision else None,
            "decision_reason": state.decision.reason if state.decision else None,
            "last_outcome": state.last_outcome.value if state.last_outcome else None,
            "last_error": state.last_error,
            "last_update_by": by,
            "last_update_tx": tx,
            "sent": state.sent,
            "confirmed": state.confirmed,
            "reverts": state.reverts,
            "events": state.events,
            "backoff_until_s": max(0.0, state.attempt.retry_at - now) if state.attempt else None,
        }
    )
    return out


def _last_update_by(state: MarketState) -> tuple[str | None, str | None]:
    if state.snapshot is None:
        return None, None
    return state.updates.get(state.snapshot.last_funding_time, (None, None))
