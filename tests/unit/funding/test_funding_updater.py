"""The updater's control flow with in-memory chain, sender and leader (no network): what is sent
when, reverts back off instead of looping, someone else's update is respected, metrics."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

import pytest
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from services.funding.chain import MarketRef, MarketSnapshot
from services.funding.decision import FundingAction
from services.funding.events import FundingEvent
from services.funding.leader import LeaderElector, NoLeader
from services.funding.updater import FundingUpdater, UpdateOutcome, UpdaterConfig
from shared.chain.deployment import market_id
from shared.chain.errors import TxMinedRevertedError, TxRevertedError
from shared.chain.tx import PendingTx, TxTimeoutError
from shared.telemetry import setup_telemetry

H8 = 8 * 3600
ETH = MarketRef("ETH/USDT", market_id("ETH/USDT"))


class FakeChain:
    def __init__(self, last: int = 1_000, now: int = 1_000 + 60) -> None:
        self.last = last
        self.now = now
        self.block = 1
        self.reads = 0
        self.clock_reads = 0

    # ChainReader surface
    async def chain_time(self) -> tuple[int, int]:
        self.clock_reads += 1
        return self.block, self.now

    async def snapshot(self, market: MarketRef) -> MarketSnapshot:
        self.reads += 1
        return MarketSnapshot(market, self.last, H8, 10**14, 0, False, self.now, self.block)

    def update_tx(self, market: MarketRef) -> dict[str, Any]:
        return {"to": "0x" + "11" * 20, "data": "0x", "value": 0}

    pm = None  # no receipt decoding in unit tests

    def open_window(self, after: int = 0) -> None:
        self.now = self.last + H8 + after
        self.block += 1


@dataclass
class FakeSender:
    chain: FakeChain
    address: str = "0x" + "22" * 20
    last_balance_wei: int | None = 10**18
    min_balance_wei: int = 5 * 10**16
    submits: int = 0
    revert_with: str | None = None
    fail_finish: BaseException | None = None
    in_flight: int = 0
    fence_waits: int = 0
    submitted: list[PendingTx] = field(default_factory=list)

    async def submit(self, tx: dict[str, Any], label: str = "tx") -> PendingTx:
        self.submits += 1
        if self.revert_with:
            raise TxRevertedError(self.revert_with)
        p = PendingTx(label, self.submits, 100_000, None, tx, [f"0x{self.submits:064x}"])  # type: ignore[arg-type]
        self.submitted.append(p)
        return p

    async def finish(self, pending: PendingTx) -> dict[str, Any]:
        if self.fail_finish is not None:
            raise self.fail_finish
        self.chain.last = self.chain.now  # the update lands
        return {
            "transactionHash": pending.hashes[-1],
            "blockNumber": 5,
            "gasUsed": 60_000,
            "status": 1,
        }

    async def wait_for_in_flight(self, timeout_s: float = 60.0) -> int:
        self.fence_waits += 1
        n, self.in_flight = self.in_flight, 0
        return n

    async def in_flight_from_chain(self) -> int:
        return self.in_flight

    async def balance(self) -> int:
        return self.last_balance_wei or 0

    async def simulate(self, tx: dict[str, Any], block: Any = "latest") -> bytes:
        raise TxRevertedError("FundingTooEarly(0x.., 1)")


class SwitchLeader(LeaderElector):
    kind = "test"

    def __init__(self, leading: bool = True, confirms: bool = True) -> None:
        super().__init__("test")
        self._leading = leading
        self.confirms = confirms

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def _step(self) -> None:
        return None

    async def confirm(self) -> bool:
        return self._leading and self.confirms

    def flip(self, leading: bool) -> None:
        self._set(leading, "test")


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def make(
    leader: LeaderElector | None = None, **config: Any
) -> tuple[FundingUpdater, FakeChain, FakeSender, Clock]:
    chain = FakeChain()
    sender = FakeSender(chain)
    clock = Clock()
    cfg = dict(grace_s=0, max_sleep_s=30.0, min_sleep_s=0.5, revert_backoff_s=60.0)
    cfg.update(config)
    updater = FundingUpdater(
        reader=chain,  # type: ignore[arg-type]
        sender=sender,  # type: ignore[arg-type]
        leader=leader or NoLeader(),
        markets=[ETH],
        config=UpdaterConfig(**cfg),
        clock=clock,
    )
    return updater, chain, sender, clock


def state(updater: FundingUpdater) -> Any:
    return updater.markets[ETH.market_id_hex]


async def test_sleeps_until_the_window_then_sends_once() -> None:
    updater, chain, sender, clock = make()
    delay = await updater.step(state(updater))
    assert sender.submits == 0 and delay == 30.0  # far away: capped sleep
    chain.now = chain.last + H8 - 10
    assert await updater.step(state(updater)) == 10  # near: exactly until the window
    reads = chain.reads
    chain.open_window(after=2)
    await updater.step(state(updater))
    assert sender.submits == 1 and state(updater).last_outcome is UpdateOutcome.CONFIRMED
    assert sender.fence_waits == 1  # the start-up fence ran before the first send
    assert chain.reads > reads  # a send is always decided on a full read, not the clock only
    for _ in range(5):
        clock.t += 100
        await updater.step(state(updater))
    assert sender.submits == 1  # the chain shows the new update: nothing more this window
    assert state(updater).decision.action is FundingAction.WAIT
    assert updater.market_status(state(updater))["last_update_by"] == "us"


async def test_a_revert_is_reported_and_backs_off_instead_of_looping(caplog: Any) -> None:
    updater, chain, sender, clock = make(revert_backoff_s=60.0)
    sender.revert_with = "StalePrice(0xabc, 1, 3600)"
    chain.open_window()
    await updater.step(state(updater))
    assert sender.submits == 1
    assert state(updater).last_outcome is UpdateOutcome.REVERTED
    assert "StalePrice(0xabc, 1, 3600)" in caplog.text and "nothing sent" in caplog.text
    for _ in range(50):  # many wake-ups within the back-off: no new attempt
        clock.t += 1
        delay = await updater.step(state(updater))
        assert delay > 0
    assert sender.submits == 1
    assert state(updater).decision.action is FundingAction.BACKOFF
    clock.t = 61
    await updater.step(state(updater))
    assert sender.submits == 2  # retried once after the back-off...
    clock.t += 100
    await updater.step(state(updater))
    assert sender.submits == 2  # ...and the next back-off doubled (120 s)
    clock.t = 61 + 120
    await updater.step(state(updater))
    assert sender.submits == 3
    assert updater.market_status(state(updater))["last_error"].startswith("reverts: StalePrice")


async def test_revert_backoff_ends_when_the_window_changes() -> None:
    updater, chain, sender, _ = make(revert_backoff_s=3600.0)
    sender.revert_with = "StalePrice(0xabc, 1, 3600)"
    chain.open_window()
    await updater.step(state(updater))
    sender.revert_with = None
    chain.last = chain.now  # someone else updated ...
    chain.open_window()  # ... and the next window opened
    state(updater).needs_full_read = True
    await updater.step(state(updater))
    assert sender.submits == 2 and state(updater).last_outcome is UpdateOutcome.CONFIRMED


async def test_someone_else_first_means_nothing_sent() -> None:
    updater, chain, sender, _ = make()
    chain.open_window()
    sender.revert_with = "FundingTooEarly(0x.., 123)"
    await updater.step(state(updater))
    assert state(updater).last_outcome is UpdateOutcome.ALREADY_UPDATED
    assert state(updater).sent == 0 and state(updater).reverts == 0


async def test_standby_never_sends_and_a_failed_pre_send_check_stops_the_leader() -> None:
    leader = SwitchLeader(leading=False)
    updater, chain, sender, _ = make(leader)
    chain.open_window()
    for _ in range(3):
        await updater.step(state(updater))
    assert sender.submits == 0 and state(updater).decision.action is FundingAction.STANDBY
    leader.flip(True)
    leader.confirms = False
    await updater.step(state(updater))
    assert sender.submits == 0 and state(updater).last_outcome is UpdateOutcome.NOT_LEADER
    leader.confirms = True
    await updater.step(state(updater))
    assert sender.submits == 1


async def test_leadership_gain_fences_on_in_flight_transactions() -> None:
    leader = SwitchLeader(leading=False)
    updater, chain, sender, _ = make(leader)
    await updater.step(state(updater))
    sender.in_flight = 1  # the previous leader's transaction is still pending
    leader.flip(True)
    assert state(updater).wake.is_set()  # leadership wakes the market loops
    chain.open_window()
    await updater.step(state(updater))
    assert state(updater).last_outcome is UpdateOutcome.FENCED and sender.submits == 0
    chain.last = chain.now  # it was mined and it was the update for this window
    await updater.step(state(updater))
    assert sender.submits == 0


async def test_unknown_outcome_blocks_the_window_and_fences() -> None:
    updater, chain, sender, clock = make(error_backoff_max_s=20.0)
    chain.open_window()
    sender.fail_finish = TxTimeoutError("not mined")
    await updater.step(state(updater))
    assert state(updater).last_outcome is UpdateOutcome.UNKNOWN and sender.submits == 1
    clock.t += 5
    await updater.step(state(updater))
    assert sender.submits == 1 and state(updater).decision.action is FundingAction.IN_FLIGHT
    sender.fail_finish = None
    sender.in_flight = 1
    clock.t += 20
    await updater.step(state(updater))
    assert state(updater).last_outcome is UpdateOutcome.FENCED and sender.submits == 1


async def test_an_unknown_outcome_blocks_the_window_from_when_it_is_known() -> None:
    updater, chain, sender, clock = make(error_backoff_max_s=20.0)
    chain.open_window()

    async def receipt_never_came(pending: Any) -> dict[str, Any]:
        clock.t += 180  # waited that long for a receipt
        raise TxTimeoutError("not mined")

    sender.finish = receipt_never_came  # type: ignore[method-assign]
    await updater.step(state(updater))
    assert state(updater).last_outcome is UpdateOutcome.UNKNOWN
    clock.t += 5
    await updater.step(state(updater))
    assert sender.submits == 1 and state(updater).decision.action is FundingAction.IN_FLIGHT


async def test_mined_revert_is_decoded_by_replay(caplog: Any) -> None:
    updater, chain, sender, _ = make()
    chain.open_window()
    sender.fail_finish = TxMinedRevertedError("mined but reverted", tx_hash="0x" + "ab" * 32)

    async def receipt(_: Any) -> dict[str, int]:
        return {"blockNumber": 9}

    sender.w3 = type(
        "W3", (), {"eth": type("Eth", (), {"get_transaction_receipt": staticmethod(receipt)})()}
    )()  # type: ignore[attr-defined]
    await updater.step(state(updater))
    assert state(updater).last_outcome is UpdateOutcome.MINED_REVERTED
    assert "mined but reverted: FundingTooEarly" in caplog.text


async def test_events_wake_the_market_and_record_who_updated() -> None:
    updater, chain, sender, _ = make()
    await updater.step(state(updater))
    st = state(updater)
    st.wake.clear()
    chain.last, chain.now = chain.last + H8 + 3, chain.last + H8 + 3
    event = FundingEvent("e1", ETH.market_id_hex, 5, 0, 1, 1, chain.last, "0x" + "cd" * 32, 9)
    updater.on_funding_event(event)
    assert st.wake.is_set() and st.needs_full_read and st.events == 1
    await updater.step(st)
    assert sender.submits == 0
    assert updater.market_status(st)["last_update_by"] == "other"
    # an event for another market is ignored
    updater.on_funding_event(FundingEvent("e2", "0x" + "00" * 32, 5, 0, 1, 1, 1, "0x1", 9))
    assert st.events == 1


async def test_run_and_graceful_stop() -> None:
    updater, chain, sender, _ = make(max_sleep_s=0.05, min_sleep_s=0.01)
    stop = asyncio.Event()
    task = asyncio.create_task(updater.run(stop))
    await asyncio.sleep(0.1)
    chain.open_window()
    for _ in range(100):
        if sender.submits:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert sender.submits == 1 and not updater.running


async def test_metrics() -> None:
    reader = InMemoryMetricReader()
    setup_telemetry("test-funding", metric_readers=[reader], force=True)
    try:
        updater, chain, _, _ = make()
        from services.funding import metrics

        metrics.register(updater)
        chain.now = chain.last + H8 - 100
        await updater.step(state(updater))
        data = reader.get_metrics_data()
        points: dict[str, list[Any]] = {}
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    points[m.name] = list(m.data.data_points)
        [secs] = points["perpex_funding_seconds_to_next_window"]
        assert secs.value == 100 and secs.attributes == {"market": "ETH/USDT"}
        assert points["perpex_funding_rate"][0].value == pytest.approx(1e-4)
        assert points["perpex_funding_wallet_balance_eth"][0].value == 1.0
        assert points["perpex_funding_leader"][0].value == 1
        metrics.unregister(updater)
    finally:
        setup_telemetry("test", force=True)


async def test_no_new_transaction_once_stopping() -> None:
    updater, chain, sender, _ = make()
    chain.open_window()
    updater.stop()
    snapshot = await chain.snapshot(ETH)
    assert await updater.attempt(state(updater), snapshot) is UpdateOutcome.STOPPING
    assert sender.submits == 0


async def test_no_transaction_when_stopped_while_fencing() -> None:
    updater, chain, sender, _ = make()
    chain.open_window()
    updater._fence_needed = True
    waits = sender.wait_for_in_flight

    async def stopped_meanwhile(timeout_s: float = 60.0) -> int:
        updater.stop()  # SIGTERM while waiting for the wallet's in-flight transactions
        return await waits(timeout_s)

    sender.wait_for_in_flight = stopped_meanwhile  # type: ignore[method-assign]
    snapshot = await chain.snapshot(ETH)
    assert await updater.attempt(state(updater), snapshot) is UpdateOutcome.STOPPING
    assert sender.fence_waits == 1 and sender.submits == 0


async def test_a_wake_during_a_step_cuts_the_next_sleep_short() -> None:
    updater, *_ = make(max_sleep_s=30.0, min_sleep_s=0.01)
    st = state(updater)
    step = updater.step
    steps = 0

    async def step_woken_meanwhile(market: Any) -> float:
        nonlocal steps
        steps += 1
        delay = await step(market)
        if steps == 1:
            market.wake.set()  # e.g. an event or leadership gained while it ran
        return delay

    updater.step = step_woken_meanwhile  # type: ignore[method-assign]
    stop = asyncio.Event()
    loop = asyncio.create_task(updater._market_loop(st, stop))
    try:
        for _ in range(100):
            if steps >= 2:
                break
            await asyncio.sleep(0.01)
        assert steps >= 2  # not asleep for the window's 30 s
    finally:
        stop.set()
        st.wake.set()
        await asyncio.wait_for(loop, 5)


def test_wallet_low_flag() -> None:
    updater, _, sender, _ = make()
    assert not updater.wallet_low and updater.status()["wallet_low"] is False
    sender.last_balance_wei = 10**16
    assert updater.wallet_low


async def test_a_failed_broadcast_fences_the_next_attempt() -> None:
    updater, chain, sender, clock = make(error_backoff_max_s=5.0)
    chain.open_window()
    await updater.step(state(updater))  # start-up fence, then a normal send
    assert sender.fence_waits == 1
    chain.open_window()

    async def lost_in_transit(tx: dict[str, Any], label: str = "tx") -> PendingTx:
        sender.submits += 1
        sender.in_flight = 1  # it did reach the node after all
        raise TimeoutError("read timed out")

    real_submit = sender.submit
    sender.submit = lost_in_transit  # type: ignore[method-assign]
    await updater.step(state(updater))
    assert state(updater).last_outcome is UpdateOutcome.FAILED
    sender.submit = real_submit  # type: ignore[method-assign]
    clock.t += 10
    await updater.step(state(updater))
    assert sender.fence_waits == 2  # waited for the in-flight transaction before retrying
    assert state(updater).last_outcome is UpdateOutcome.FENCED
