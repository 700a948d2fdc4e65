"""The nonce ledger's decisions (pure): reconciliation at start, holes, each entry's next step,
when the sender counts as stuck; and which failures are transient."""

from __future__ import annotations

import json

import aiohttp
import pytest
from web3.exceptions import Web3RPCError

from shared.chain.errors import InsufficientBalanceError, TxRevertedError
from shared.chain.nonces import (
    Broadcast,
    Step,
    entry_step,
    holes,
    plan_reconcile,
    recheck_delay,
    stuck_reason,
)
from shared.chain.tx_errors import NonceGapError, TxTimeoutError, is_transient, maybe_delivered


def test_a_clean_wallet_needs_nothing() -> None:
    plan = plan_reconcile(mined_nonce=31, pending_nonce=31, pool_nonces={})
    assert plan.clean and plan.next_nonce == 31


def test_executable_leftovers_are_waited_for() -> None:
    # a previous run's two transactions the node can mine: wait, never cancel
    plan = plan_reconcile(31, 33, pool_nonces={31: None, 32: None})
    assert plan.wait == (31, 32) and plan.cancel == () and plan.next_nonce == 33


def test_a_gapped_queue_is_cancelled_although_pending_equals_latest() -> None:
    # the case: latest = pending = 31, nonces 32-57 queued in the pool behind a gap
    plan = plan_reconcile(31, 31, pool_nonces=set(range(32, 58)))
    assert plan.wait == ()
    assert plan.cancel == tuple(range(31, 58))  # the gap and everything queued behind it
    assert plan.next_nonce == 58


def test_a_gap_after_executable_ones_cancels_from_the_gap() -> None:
    plan = plan_reconcile(10, 12, pool_nonces={10: None, 11: None, 13: None, 14: None})
    assert plan.wait == (10, 11)
    assert plan.cancel == (12, 13, 14)
    assert plan.next_nonce == 15


def test_without_a_txpool_api_only_pending_over_latest_is_seen() -> None:
    plan = plan_reconcile(5, 7, pool_nonces=None)
    assert plan.wait == (5, 6) and plan.cancel == () and plan.next_nonce == 7


def test_the_ledgers_own_nonces_are_neither_waited_for_nor_cancelled() -> None:
    # this run tracks 20 and 22 (22 queued behind a hole at 21 the pool does not hold)
    plan = plan_reconcile(20, 21, pool_nonces={20: None, 22: None}, owned={20, 22}, next_nonce=23)
    assert plan.wait == () and plan.cancel == (21,) and plan.next_nonce == 23


def test_nonces_below_the_mined_one_in_a_stale_pool_answer_are_ignored() -> None:
    plan = plan_reconcile(50, 50, pool_nonces={48: None, 49: None})
    assert plan.clean and plan.next_nonce == 50


def test_holes_are_the_untracked_nonces_below_the_highest_tracked_one() -> None:
    assert holes(10, [10, 11, 12]) == []
    assert holes(10, [11, 12]) == [10]
    assert holes(10, [10, 13]) == [11, 12]
    assert holes(10, [5, 6]) == []  # all mined: resolved next
    assert holes(10, []) == []


@pytest.mark.parametrize(
    ("nonce", "broadcast", "mined", "sent_ago", "checked_ago", "step"),
    [
        (4, Broadcast.SENT, 5, 0.0, 0.0, Step.RESOLVE),  # the nonce is used
        (4, Broadcast.UNKNOWN, 5, 0.0, 0.0, Step.RESOLVE),  # used: whichever version it was
        (5, Broadcast.UNKNOWN, 5, 0.0, 1.0, Step.CHECK_KNOWN),  # answer lost: ask the node
        (5, Broadcast.UNKNOWN, 5, 20.0, 0.1, Step.REPLACE),  # checked just now, but stuck
        (5, Broadcast.SENT, 5, 20.0, 0.0, Step.REPLACE),  # not mined after REPLACE_AFTER_S
        (5, Broadcast.SENT, 5, 1.0, 0.0, Step.WAIT),
    ],
)
def test_entry_step(
    nonce: int, broadcast: Broadcast, mined: int, sent_ago: float, checked_ago: float, step: Step
) -> None:
    now = 1000.0
    assert (
        entry_step(nonce, broadcast, mined, now, now - sent_ago, now - checked_ago, 15.0, 0.5)
        is step
    )


def test_unknown_broadcasts_are_checked_at_the_next_poll_then_less_often() -> None:
    assert recheck_delay(0, 0.25) == 0.25
    assert recheck_delay(1, 0.25) == 0.25
    assert recheck_delay(3, 0.25) == 1.0
    assert recheck_delay(30, 0.25) == 5.0
    assert recheck_delay(30, 0.05) == 1.0  # at most 20 polls


def test_stuck_reasons() -> None:
    assert stuck_reason([], 100.0, 60.0, {}) is None
    assert stuck_reason([(7, "liquidate:1", 90.0)], 100.0, 60.0, {}) is None
    reason = stuck_reason([(8, "b", 10.0), (7, "liquidate:1", 30.0)], 100.0, 60.0, {})
    assert reason == "nonce 7 (liquidate:1) not mined for 70s"  # the lowest nonce decides
    gap = stuck_reason([(9, "x", 99.0)], 100.0, 60.0, {8: "insufficient funds"})
    assert gap == "nonce gap at 8 cannot be filled (insufficient funds)"


def _response_error(status: int) -> aiohttp.ClientResponseError:
    return aiohttp.ClientResponseError(None, (), status=status)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "exc",
    [
        _response_error(429),
        _response_error(500),
        _response_error(502),
        _response_error(503),
        aiohttp.ServerDisconnectedError(),
        aiohttp.ClientPayloadError("Response payload is not completed"),
        aiohttp.ClientOSError(104, "Connection reset by peer"),
        TimeoutError(),
        TimeoutError("read timed out"),
        ConnectionRefusedError(),
        OSError("network unreachable"),
        json.JSONDecodeError("Expecting value", '{"jsonrpc": "2.0", "res', 22),
        Web3RPCError("503 Service Temporarily Unavailable"),
        Web3RPCError("429 Too Many Requests"),
    ],
)
def test_transient_failures(exc: BaseException) -> None:
    assert is_transient(exc)


@pytest.mark.parametrize(
    "exc",
    [
        _response_error(400),
        _response_error(401),
        _response_error(404),
        TxRevertedError("NotLiquidatable()"),
        InsufficientBalanceError("poor"),
        TxTimeoutError("not mined"),
        NonceGapError("gap"),
        Web3RPCError("execution reverted"),
        ValueError("bad"),
    ],
)
def test_final_failures(exc: BaseException) -> None:
    assert not is_transient(exc)


def test_which_broadcast_failures_may_have_reached_the_node() -> None:
    assert not maybe_delivered(ConnectionRefusedError())  # never connected: not sent
    assert not maybe_delivered(Web3RPCError("503 busy"))  # an answer: the node refused it
    assert maybe_delivered(aiohttp.ServerDisconnectedError())  # dropped after sending
    assert maybe_delivered(TimeoutError())
    assert maybe_delivered(json.JSONDecodeError("cut short", "{", 1))
