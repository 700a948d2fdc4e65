"""The last look before sending (PreSend) and what the executor makes of it, with fakes for the
node: a lost race or an unprofitable liquidation sends nothing; a good one is sent with the
gas the pre-send estimate found (not estimated twice)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from services.keeper.chain import ChainReader, MarketParams
from services.keeper.executor import Callbacks, Executor
from services.keeper.presend import Go, NativePrice, PreSend, Skip
from services.keeper.profit import WAD, to_wad
from services.keeper.races import GONE, MINED_LOST_RACE, NOT_LIQUIDATABLE, OUT_OF_BOUNDS
from shared.chain.abi import load_abi
from shared.chain.errors import ErrorDecoder, TxMinedRevertedError, TxRevertedError
from shared.chain.fees import GWEI, Fees
from shared.chain.tx import TxSender

ME = "0x" + "aa" * 20
TX = {"to": "0x" + "11" * 20, "data": "0x"}
RESULT = encode(["uint256", "uint256"], [5 * WAD, 90 * WAD])  # closed 5 ETH, reward 90


def _revert(signature: str, types: list[str], args: list[object]) -> TxRevertedError:
    data = "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()
    return TxRevertedError(signature, data)


class FakeSender:
    """estimate -> latest, simulate("pending") -> pending; fees 1 gwei base + 1 gwei tip."""

    def __init__(
        self,
        latest: Exception | int = 150_000,
        pending: Exception | bytes = RESULT,
        finish_error: Exception | None = None,
    ):
        self.latest = latest
        self.pending = pending
        self.finish_error = finish_error
        self.decoder = ErrorDecoder([load_abi("PositionManager")])
        self.address = ME
        self.blocks: list[str] = []
        self.submitted: list[int | None] = []

    async def estimate(self, tx: dict[str, Any]) -> int:
        if isinstance(self.latest, Exception):
            raise self.latest
        return self.latest

    async def current_fees(self) -> tuple[int, Fees]:
        return GWEI, Fees(3 * GWEI, GWEI)

    async def simulate(self, tx: dict[str, Any], block: str = "latest") -> bytes:
        self.blocks.append(block)
        if isinstance(self.pending, Exception):
            raise self.pending
        return self.pending

    async def submit(self, tx: dict[str, Any], label: str, estimated_gas: int | None = None) -> Any:
        self.submitted.append(estimated_gas)
        return object()

    async def finish(self, pending: Any) -> dict[str, Any]:
        if self.finish_error is not None:
            raise self.finish_error
        return {"blockNumber": 12, "transactionHash": b"\x01" * 32}

    def track(self, pending: Any) -> None:
        pass

    def is_resolved(self, pending: Any) -> bool:
        return True


class FakeChain:
    def __init__(self, liquidators: list[str] | None = None):
        self.liquidators_seen = liquidators or []
        self.ranges: list[tuple[int, int, int]] = []

    def liquidation_tx(self, token_id: int) -> dict[str, Any]:
        return TX

    def liquidation_result(self, raw: bytes) -> tuple[int, int] | None:
        return ChainReader.liquidation_result(cast(ChainReader, self), raw)

    async def liquidators(self, token_id: int, from_block: int, to_block: int) -> list[str]:
        self.ranges.append((token_id, from_block, to_block))
        return self.liquidators_seen


def _presend(sender: FakeSender, native: int | None = 2000 * WAD, ratio: str = "1") -> PreSend:
    chain = FakeChain()
    price = NativePrice(native, None, cast(ChainReader, chain))
    return PreSend(
        cast(TxSender, sender),
        cast(ChainReader, chain),
        price,
        to_wad(ratio),
        {"0xab": MarketParams(to_wad("0.025"), to_wad("0.02"), to_wad("0.5"))}.get,
    )


async def test_a_competitor_in_the_pending_block_means_nothing_is_sent() -> None:
    sender = FakeSender(pending=_revert("PositionNotFound(uint256)", ["uint256"], [7]))
    verdict = await _presend(sender).check(7, "0xab", TX)
    assert isinstance(verdict, Skip)
    assert (verdict.revert, verdict.stage) == (GONE, "pending")
    assert sender.blocks == ["pending"]


async def test_a_revert_on_the_latest_block_stops_before_the_pending_call() -> None:
    err = _revert(
        "NotLiquidatable(uint256,int256,uint256)", ["uint256", "int256", "uint256"], [7, 5, 4]
    )
    sender = FakeSender(latest=err)
    verdict = await _presend(sender).check(7, "0xab", TX)
    assert isinstance(verdict, Skip) and (verdict.revert, verdict.stage) == (
        NOT_LIQUIDATABLE,
        "latest",
    )
    assert sender.blocks == []


async def test_the_reward_the_simulation_returns_is_weighed_against_the_gas() -> None:
    # 150k gas at 2 gwei with ETH at 2,000 = 0.6 collateral; the simulation returns 90
    verdict = await _presend(FakeSender()).check(7, "0xab", TX)
    assert isinstance(verdict, Go) and verdict.assessment is not None
    assert verdict.estimated_gas == 150_000 and verdict.closed == 5 * WAD
    assert verdict.assessment.reward == 90 * WAD
    assert verdict.assessment.cost == 6 * WAD // 10


async def test_an_unprofitable_liquidation_is_skipped_and_one_at_the_margin_is_not() -> None:
    # reward 0.6 = cost 0.6: at the margin, sent; 1 wei less: skipped
    at_margin = encode(["uint256", "uint256"], [WAD, 6 * WAD // 10])
    assert isinstance(await _presend(FakeSender(pending=at_margin)).check(7, "0xab", TX), Go)
    below = encode(["uint256", "uint256"], [WAD, 6 * WAD // 10 - 1])
    verdict = await _presend(FakeSender(pending=below)).check(7, "0xab", TX)
    assert isinstance(verdict, Skip) and verdict.reason == "unprofitable"
    assert verdict.revert is None and verdict.assessment is not None


async def test_without_a_native_price_or_with_ratio_zero_it_is_sent() -> None:
    tiny = encode(["uint256", "uint256"], [WAD, 1])
    assert isinstance(
        await _presend(FakeSender(pending=tiny), native=None).check(7, "0xab", TX), Go
    )
    assert isinstance(await _presend(FakeSender(pending=tiny), ratio="0").check(7, "0xab", TX), Go)


async def test_an_old_deployment_returning_nothing_is_priced_on_the_whole_size() -> None:
    # 5 ETH at 1,830: reward 91.5 (the contract's formula) vs cost 0.6
    verdict = await _presend(FakeSender(pending=b"")).check(
        7, "0xab", TX, size=5 * WAD, index=1830 * WAD
    )
    assert isinstance(verdict, Go) and verdict.assessment is not None
    assert verdict.assessment.reward == 915 * WAD // 10 and verdict.closed is None


async def _run(sender: FakeSender, chain: FakeChain | None = None) -> tuple[list[Any], Executor]:
    calls: list[Any] = []
    chain = chain or FakeChain()
    price = NativePrice(2000 * WAD, None, cast(ChainReader, chain))
    presend = PreSend(cast(TxSender, sender), cast(ChainReader, chain), price, to_wad(1))
    executor = Executor(
        cast(TxSender, sender),
        cast(ChainReader, chain),
        Callbacks(
            liquidated=lambda t, r: calls.append(("liquidated", t)),
            dropped=lambda t, why: calls.append(("dropped", t, why)),
            retry=lambda t, why: calls.append(("retry", t, why)),
        ),
        presend=presend,
    )
    assert executor.liquidate(7, "0xab", 1, 2, 10, None)
    task = executor.jobs[7].task
    assert task is not None
    await asyncio.wait_for(task, 5)
    return calls, executor


async def test_the_executor_sends_with_the_pre_send_estimate() -> None:
    sender = FakeSender()
    calls, executor = await _run(sender)
    assert calls == [("liquidated", 7)]
    assert sender.submitted == [150_000]  # TxSender does not estimate again
    assert executor.stats["reward_wad"] == 90 * WAD and executor.stats["lost_races"] == 0


async def test_the_executor_drops_a_lost_race_without_sending() -> None:
    sender = FakeSender(pending=_revert("PositionNotFound(uint256)", ["uint256"], [7]))
    calls, executor = await _run(sender)
    assert calls == [("dropped", 7, "gone")]
    assert sender.submitted == [] and executor.stats["lost_races"] == 1
    assert executor.window.contested and executor.window.limit == 1  # one at a time now


async def test_no_room_in_the_vamm_is_checked_again_not_a_lost_race() -> None:
    err = _revert("LiquidationOutOfBounds(uint256,uint256,uint256)", ["uint256"] * 3, [7, 1, 2])
    calls, executor = await _run(FakeSender(pending=err))
    assert calls == [("retry", 7, OUT_OF_BOUNDS.reason)]
    assert executor.stats["lost_races"] == 0 and not executor.window.contested


async def test_the_executor_skips_an_unprofitable_liquidation() -> None:
    sender = FakeSender(pending=encode(["uint256", "uint256"], [WAD, 1]))
    calls, executor = await _run(sender)
    assert calls == [("retry", 7, "unprofitable")]
    assert sender.submitted == [] and executor.stats["unprofitable"] == 1


async def test_a_mined_revert_after_a_competitors_liquidation_is_a_lost_race() -> None:
    mined = TxMinedRevertedError("reverted", tx_hash="0x01", gas_used=40_000, block_number=12)
    chain = FakeChain(liquidators=["0x" + "bb" * 20])
    calls, executor = await _run(FakeSender(finish_error=mined), chain)
    assert calls == [("retry", 7, "mined_reverted")]
    assert executor.stats["lost_races"] == 1 and executor.stats["mined_reverted"] == 1
    assert chain.ranges == [(7, 11, 12)]  # from the block after the decision to the revert's
    assert MINED_LOST_RACE.lost_race


async def test_a_mined_revert_nobody_explains_is_not_a_lost_race() -> None:
    mined = TxMinedRevertedError("reverted", tx_hash="0x01", gas_used=40_000, block_number=12)
    calls, executor = await _run(FakeSender(finish_error=mined), FakeChain(liquidators=[]))
    assert calls == [("retry", 7, "mined_reverted")]
    assert executor.stats["lost_races"] == 0
