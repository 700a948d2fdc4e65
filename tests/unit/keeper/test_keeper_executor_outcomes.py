"""How the executor maps a liquidation's outcome to the keeper's callbacks."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import aiohttp
import pytest

from services.keeper.chain import ChainReader
from services.keeper.executor import Callbacks, Executor
from shared.chain.errors import TxMinedRevertedError, TxRevertedError
from shared.chain.tx import (
    NonceGapError,
    TxCancelledError,
    TxNonceConsumedError,
    TxSender,
    TxTimeoutError,
)


class FakeChain:
    def liquidation_tx(self, token_id: int) -> dict[str, Any]:
        return {"to": "0x" + "11" * 20, "data": "0x"}


class FakeSender:
    def __init__(
        self,
        submit_error: Exception | None = None,
        finish_error: Exception | None = None,
        timeouts: int = 0,
        wait_failures: list[Exception] | None = None,
    ):
        self.submit_error = submit_error
        self.finish_error = finish_error
        self.timeouts = timeouts  # finish() gives up this many times first
        self.wait_failures = list(wait_failures or [])  # then fails like this while waiting
        self.tracked: list[object] = []
        self.submits = 0
        self.in_flight_while_waiting: list[bool] = []
        self.executor: Executor | None = None

    async def submit(
        self, tx: dict[str, Any], label: str, estimated_gas: int | None = None
    ) -> object:
        self.submits += 1
        self.estimated_gas = estimated_gas
        if self.submit_error is not None:
            raise self.submit_error
        return object()

    async def finish(self, pending: object) -> dict[str, Any]:
        if self.executor is not None:
            self.in_flight_while_waiting.append(self.executor.in_flight(7))
        if self.timeouts:
            self.timeouts -= 1
            await asyncio.sleep(0)
            raise TxTimeoutError("not mined after 300s")
        if self.wait_failures:
            await asyncio.sleep(0)
            raise self.wait_failures.pop(0)
        if self.finish_error is not None:
            raise self.finish_error
        return {"blockNumber": 5, "transactionHash": b"\x01" * 32}

    def track(self, pending: object) -> None:
        self.tracked.append(pending)

    def is_resolved(self, pending: object) -> bool:
        return False  # a failure while waiting never resolves a nonce


async def _outcome(sender: FakeSender) -> list[tuple[str, int, Any]]:
    calls: list[tuple[str, int, Any]] = []
    executor = Executor(
        cast(TxSender, sender),
        cast(ChainReader, FakeChain()),
        Callbacks(
            liquidated=lambda t, r: calls.append(("liquidated", t, r["blockNumber"])),
            dropped=lambda t, why: calls.append(("dropped", t, why)),
            retry=lambda t, why: calls.append(("retry", t, why)),
        ),
    )
    sender.executor = executor
    assert executor.liquidate(7, "0xab", 1, 2, 3, None)
    job = executor.jobs[7]
    assert job.task is not None
    await asyncio.wait_for(job.task, 5)
    assert not executor.in_flight(7)
    return calls


async def test_a_mined_revert_reads_the_position_again_instead_of_dropping_it() -> None:
    # another liquidator first, or the owner added margin ahead of us: only a fresh read tells
    calls = await _outcome(FakeSender(finish_error=TxMinedRevertedError("NotLiquidatable()")))
    assert calls == [("retry", 7, "mined_reverted")]


async def test_a_simulated_position_not_found_is_dropped() -> None:
    calls = await _outcome(FakeSender(submit_error=TxRevertedError("PositionNotFound(uint256)")))
    assert calls == [("dropped", 7, "gone")]


async def test_a_transaction_not_mined_in_time_is_waited_for_not_sent_again() -> None:
    # still out there holding its nonce: the token stays in flight, the sender keeps it
    sender = FakeSender(timeouts=2)
    assert await _outcome(sender) == [("liquidated", 7, 5)]
    assert len(sender.tracked) == 2


async def test_a_mined_liquidation_is_reported() -> None:
    assert await _outcome(FakeSender()) == [("liquidated", 7, 5)]


async def test_a_failure_while_waiting_keeps_the_token_in_flight_until_mined(
    monkeypatch: Any,
) -> None:
    # the receipt poll failing (a 502, a dropped connection) is not an outcome: the transaction
    # still holds its nonce, so no second liquidation may start; wait again until it is mined
    monkeypatch.setattr(asyncio, "sleep", _no_sleep)
    errors: list[Exception] = [
        aiohttp.ClientResponseError(_request_info(), (), status=502),
        aiohttp.ServerDisconnectedError(),
        RuntimeError("unexpected"),
    ]
    sender = FakeSender(wait_failures=errors)
    assert await _outcome(sender) == [("liquidated", 7, 5)]
    assert sender.submits == 1  # never sent twice
    assert sender.in_flight_while_waiting == [True] * 4


@pytest.mark.parametrize(
    ("error", "reason"),
    [
        (TxNonceConsumedError("used by another transaction"), "unconfirmed"),
        (TxCancelledError("filled by a cancellation"), "unconfirmed"),
    ],
)
async def test_a_nonce_filled_otherwise_sends_the_token_back(error: Exception, reason: str) -> None:
    assert await _outcome(FakeSender(finish_error=error)) == [("retry", 7, reason)]


async def test_a_nonce_gap_sends_nothing_and_checks_again() -> None:
    calls = await _outcome(FakeSender(submit_error=NonceGapError("nonce gap at 4")))
    assert calls == [("retry", 7, "nonce_gap")]


_real_sleep = asyncio.sleep


async def _no_sleep(_delay: float, *args: Any) -> None:
    await _real_sleep(0)


def _request_info() -> aiohttp.RequestInfo:
    from multidict import CIMultiDict, CIMultiDictProxy
    from yarl import URL

    return aiohttp.RequestInfo(URL("http://node:8545"), "POST", CIMultiDictProxy(CIMultiDict()))
