"""The funding updater: one scheduler per market, one writer among replicas.

Each market's loop reads the chain (time from the latest block; funding state at that block),
asks `decide()` what to do and sleeps until the next window opens - never longer than
FUNDING_MAX_SLEEP_SECONDS, after which only the chain's clock is re-read. A FundingRateUpdated
event from Kafka (anyone's update, ours included) or a leadership change wakes it early.

Sending (leader only, after a live leadership check): TxSender simulates `updateFundingRate`
first. If someone else updated first, the simulation reverts with FundingTooEarly and nothing
is sent. Any other revert is logged with its decoded reason and the market backs off
(FUNDING_REVERT_BACKOFF_SECONDS, doubling, capped) until then or until the next window: never a
loop of sends. A transaction whose outcome is unknown (timeout, nonce taken) blocks the window
for this replica, and before the next send the wallet's in-flight transactions must be mined:
the same fence runs at start and whenever leadership is (re)gained, so a restart or a
fail-over never sends a second transaction for a window a previous one is still settling.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from services.funding import metrics
from services.funding.chain import ChainReader, MarketRef, MarketSnapshot
from services.funding.decision import Action, Attempt, Decision, MarketView, backoff_delay, decide
from services.funding.events import FundingEvent, FundingEventListener, FundingParamsEvent
from services.funding.leader import LeaderElector
from services.funding.outcomes import (
    MarketState,
    Outcome,
    UpdaterConfig,
    failed,
    market_report,
    mined_reverted,
    remember,
    simulation_reverted,
)
from services.funding.rates import format_duration, format_rate, format_timestamp, rate_fraction
from shared.chain.errors import InsufficientBalanceError, TxMinedRevertedError, TxRevertedError
from shared.chain.tx import PendingTx, TxSender
from shared.telemetry import tracer

ListenerFactory = Callable[
    [Callable[[FundingEvent], None], Callable[[FundingParamsEvent], None]], FundingEventListener
]
log = logging.getLogger("perpex.funding")
_tracer = tracer("perpex.funding")


class FundingUpdater:
    def __init__(
        self,
        *,
        reader: ChainReader,
        sender: TxSender,
        leader: LeaderElector,
        markets: list[MarketRef],
        config: UpdaterConfig | None = None,
        listener_factory: ListenerFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
    ):
        if not markets:
            raise ValueError("no markets to update")
        self.reader = reader
        self.sender = sender
        self.leader = leader
        self.config = config or UpdaterConfig()
        self.clock = clock
        self.markets = {m.market_id_hex: MarketState(m) for m in markets}
        self.listener = (
            listener_factory(self.on_funding_event, self.on_params_event)
            if listener_factory
            else None
        )
        self._our_txs: deque[PendingTx] = deque(maxlen=64)  # hashes grow on replacement
        self._fence_needed = True  # a previous run may have left a transaction in flight
        self._fence_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self.running = False
        self.leader.add_listener(self._on_leadership)

    # ---------------------------------------------------------------- lifecycle
    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` is set; then let sends in progress finish (SHUTDOWN_TIMEOUT_S) and
        give up leadership."""
        stop = stop or self._stop
        self._stop = stop
        metrics.register(self)
        self.running = True
        await self.leader.start()
        workers = [
            asyncio.create_task(self._market_loop(state, stop), name=f"funding:{state.ref.pair}")
            for state in self.markets.values()
        ]
        helpers = [asyncio.create_task(self._balance_loop(stop), name="funding:balance")]
        if self.listener is not None:
            helpers.append(asyncio.create_task(self.listener.run(stop), name="funding:events"))
        try:
            await stop.wait()
        finally:
            stop.set()
            for state in self.markets.values():
                state.wake.set()
            _done, unfinished = await asyncio.wait(workers, timeout=self.config.shutdown_timeout_s)
            if unfinished:
                log.warning(
                    "shutdown: %d market loop(s) still busy after %.0fs; cancelling",
                    len(unfinished),
                    self.config.shutdown_timeout_s,
                )
            for task in [*unfinished, *helpers]:
                task.cancel()
            for task in [*workers, *helpers]:
                with contextlib.suppress(BaseException):
                    await task
            await self.leader.stop()
            metrics.unregister(self)
            self.running = False
            log.info("funding updater stopped")

    def stop(self) -> None:
        self._stop.set()
        for state in self.markets.values():
            state.wake.set()

    # ---------------------------------------------------------------- wake-ups
    def _on_leadership(self, leading: bool) -> None:
        if leading:
            self._fence_needed = True
        for state in self.markets.values():
            state.needs_full_read = True
            state.wake.set()

    def is_our_tx(self, tx_hash: str) -> bool:
        tx_hash = tx_hash.lower()
        return any(tx_hash in (h.lower() for h in p.hashes) for p in self._our_txs)

    def on_funding_event(self, event: FundingEvent) -> None:
        """A FundingRateUpdated event from Kafka: note who updated and re-read the chain."""
        state = self.markets.get(event.market_id)
        if state is None:
            return
        state.events += 1
        pair = state.ref.pair
        if event.reverted:
            log.warning(
                "%s: the update at %d (tx %s) was removed by a reorg; re-reading the chain",
                pair,
                event.timestamp,
                event.tx_hash,
            )
        else:
            by = "us" if self.is_our_tx(event.tx_hash) else "other"
            remember(state, event.timestamp, by, event.tx_hash)
            interval = state.snapshot.interval if state.snapshot else 0
            rate = format_rate(event.rate_wad, interval) if interval else str(event.rate_wad)
            log.info(
                "%s: FundingRateUpdated at %d, rate %s, by %s (tx %s)",
                pair,
                event.timestamp,
                rate,
                "this updater" if by == "us" else "another party",
                event.tx_hash,
            )
        state.needs_full_read = True
        state.wake.set()

    def on_params_event(self, event: FundingParamsEvent) -> None:
        """FundingParamsUpdated (a governance change): re-read the market's configuration now,
        so the next update is scheduled on the new interval without a restart."""
        state = self.markets.get(event.market_id)
        if state is None:
            return
        state.events += 1
        old = state.snapshot.interval if state.snapshot else None
        log.info(
            "%s: funding parameters %s: interval %ss (was %s), max rate %s (tx %s)",
            state.ref.pair,
            "change reverted by a reorg" if event.reverted else "changed",
            event.interval,
            old if old is not None else "?",
            format_rate(event.max_funding_rate, event.interval) if event.interval else "?",
            event.tx_hash,
        )
        state.needs_full_read = True
        state.wake.set()

    # ---------------------------------------------------------------- the market loop
    async def _market_loop(self, state: MarketState, stop: asyncio.Event) -> None:
        while not stop.is_set():
            state.heartbeat = self.clock()
            # Cleared before the step, not after: a wake during it (an event, leadership
            # gained) must cut the following sleep short, not be lost.
            state.wake.clear()
            try:
                delay = await self.step(state)
                state.error_failures = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                state.error_failures += 1
                state.last_error = f"{type(exc).__name__}: {exc}"
                state.needs_full_read = True
                delay = backoff_delay(
                    state.error_failures,
                    max(self.config.min_sleep_s, 0.5),
                    self.config.error_backoff_max_s,
                )
                log.warning("%s: %s; retrying in %.1fs", state.ref.pair, state.last_error, delay)
            if stop.is_set():
                break
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(state.wake.wait(), max(0.0, delay))

    async def step(self, state: MarketState) -> float:
        """One look at a market: read, decide, maybe send. Returns seconds to sleep."""
        snapshot = await self._read(state)
        decision = self._decide(state, snapshot)
        if decision.action is Action.SEND and not self._fresh(state):
            snapshot = await self._read(state, full=True)
            decision = self._decide(state, snapshot)
        state.decision = decision
        if decision.action is not Action.SEND:
            return decision.wake_in
        outcome = await self.attempt(state, snapshot)
        state.last_outcome = outcome
        state.needs_full_read = True
        if outcome in (Outcome.CONFIRMED, Outcome.ALREADY_UPDATED, Outcome.FENCED):
            return 0.0
        return self.config.min_sleep_s

    def _decide(self, state: MarketState, snapshot: MarketSnapshot) -> Decision:
        return decide(
            MarketView(snapshot.last_funding_time, snapshot.interval, snapshot.chain_time),
            is_leader=self.leader.is_leader,
            now=self.clock(),
            attempt=state.attempt,
            grace=self.config.grace_s,
            max_sleep=self.config.max_sleep_s,
            min_sleep=self.config.min_sleep_s,
        )

    def _fresh(self, state: MarketState) -> bool:
        return state.last_read_full and not state.needs_full_read

    async def _read(self, state: MarketState, full: bool = False) -> MarketSnapshot:
        now = self.clock()
        stale = now - state.full_read_at >= self.config.full_read_every_s
        if full or state.needs_full_read or state.snapshot is None or stale:
            state.needs_full_read = False
            snapshot = await self.reader.snapshot(state.ref)
            self._observe(state, snapshot)
            state.full_read_at = state.read_at = now
            state.last_read_full = True
        else:
            number, chain_time = await self.reader.chain_time()
            snapshot = state.snapshot.at(number, chain_time)
            state.read_at = now
            state.last_read_full = False
        was_due = state.snapshot is not None and state.snapshot.status().due
        state.snapshot = snapshot
        if snapshot.status().due and not was_due:
            level = logging.INFO if self.leader.is_leader else logging.DEBUG
            log.log(level, "%s", snapshot.status().log_line())
        return snapshot

    def _observe(self, state: MarketState, snapshot: MarketSnapshot) -> None:
        previous = state.snapshot
        expected = self.config.expected_interval_s
        if (
            expected
            and snapshot.interval != expected
            and state.interval_warned != snapshot.interval
        ):
            state.interval_warned = snapshot.interval
            log.warning(
                "%s: FUNDING_INTERVAL_SECONDS=%d but the contract's fundingInterval is %d; "
                "following the contract",
                state.ref.pair,
                expected,
                snapshot.interval,
            )
        if previous is None or snapshot.last_funding_time != previous.last_funding_time:
            if previous is not None and snapshot.last_funding_time not in state.updates:
                if state.our_last_tx is not None:
                    remember(state, snapshot.last_funding_time, "us", state.our_last_tx)
                else:
                    remember(state, snapshot.last_funding_time, "other", None)
            state.our_last_tx = None
            log.info("%s", snapshot.status().log_line())

    # ---------------------------------------------------------------- sending
    async def _fence(self) -> bool:
        """Before the first send after start or after (re)gaining leadership: wait until the
        wallet has nothing in flight. Returns True when something was in flight."""
        if not self._fence_needed:
            return False
        async with self._fence_lock:
            if not self._fence_needed:
                return False
            waited = await self.sender.wait_for_in_flight(self.config.fence_timeout_s)
            if await self.sender.in_flight_from_chain() > 0:
                raise RuntimeError("wallet transactions still in flight; not sending")
            self._fence_needed = False
            if waited:
                log.warning(
                    "waited for %d in-flight transaction(s) of this wallet before sending", waited
                )
            return waited > 0

    async def attempt(self, state: MarketState, snapshot: MarketSnapshot) -> Outcome:
        """Try to update one market whose window `decide()` found open."""
        pair = state.ref.pair
        window = snapshot.last_funding_time
        if self._stop.is_set():
            return Outcome.STOPPING
        if await self._fence():
            return Outcome.FENCED  # the chain may have moved: decide again on a fresh read
        if not await self.leader.confirm():
            log.info("%s: leadership did not hold at the pre-send check; not sending", pair)
            return Outcome.NOT_LEADER
        if self._stop.is_set():  # the fence can wait long: no send begun after SIGTERM
            return Outcome.STOPPING
        tx = self.reader.update_tx(state.ref)
        now = self.clock()
        failures = (
            state.attempt.failures
            if state.attempt is not None and state.attempt.window == window
            else 0
        )
        with _tracer.start_as_current_span(
            "funding.update", attributes={"market": pair, "window": window}
        ) as span:
            try:
                pending = await self.sender.submit(tx, f"updateFundingRate {pair}")
            except TxRevertedError as exc:
                span.set_attribute("funding.outcome", "simulation_reverted")
                return simulation_reverted(self.config, state, window, exc.reason, failures, now)
            except InsufficientBalanceError as exc:
                return failed(
                    self.config, state, window, f"insufficient balance: {exc}", failures, now
                )
            except Exception as exc:
                # A broadcast that failed in transit may still have reached the mempool: wait
                # for the wallet's in-flight transactions before the next attempt.
                self._fence_needed = True
                return failed(
                    self.config, state, window, f"{type(exc).__name__}: {exc}", failures, now
                )

            # Sent: this window is now ours to settle; nothing else goes out for it meanwhile.
            state.sent += 1
            self._our_txs.append(pending)
            metrics.instruments().sent.add(1, {"market": pair})
            state.attempt = Attempt(
                window,
                sent=True,
                retry_at=now + self.config.revert_backoff_s,
                failures=failures,
                reason="sent",
            )
            try:
                receipt = await self.sender.finish(pending)
            except TxMinedRevertedError as exc:
                reason = await self._replay_reason(tx, exc.tx_hash)
                span.set_attribute("funding.outcome", "mined_reverted")
                return mined_reverted(
                    self.config, state, window, reason, exc.tx_hash, failures, now
                )
            except Exception as exc:
                self._fence_needed = True
                state.last_error = f"outcome unknown: {type(exc).__name__}: {exc}"
                log.error(
                    "%s: updateFundingRate sent (nonce %d, %s) but its outcome is unknown: %s; "
                    "waiting for the chain before trying again",
                    pair,
                    pending.nonce,
                    ", ".join(pending.hashes),
                    exc,
                )
                state.attempt = Attempt(
                    window,
                    sent=True,
                    # from now, not from before the send: waiting for the receipt took long
                    retry_at=self.clock() + self.config.error_backoff_max_s,
                    failures=failures + 1,
                    reason=state.last_error,
                )
                return Outcome.UNKNOWN
            tx_hash = _hex(receipt["transactionHash"])
            span.set_attribute("funding.outcome", "confirmed")
            span.set_attribute("tx.hash", tx_hash)
        state.confirmed += 1
        state.last_error = None
        updated_at = self._update_time(receipt)
        if updated_at is not None:
            remember(state, updated_at, "us", tx_hash)
        else:
            state.our_last_tx = tx_hash
        metrics.instruments().confirmed.add(1, {"market": pair})
        log.info(
            "%s: funding updated for the window after %s (%s late) in block %d, tx %s, gas %d",
            pair,
            format_timestamp(window),
            format_duration(max(0, snapshot.chain_time - snapshot.next_funding_time)),
            int(receipt["blockNumber"]),
            tx_hash,
            int(receipt["gasUsed"]),
        )
        return Outcome.CONFIRMED

    def _update_time(self, receipt: Any) -> int | None:
        """The new lastFundingTime, from the FundingRateUpdated log in our receipt."""
        try:
            logs = self.reader.pm.events.FundingRateUpdated().process_receipt(receipt)
            return int(logs[0]["args"]["timestamp"]) if logs else None
        except Exception:
            return None

    async def _replay_reason(self, tx: dict[str, Any], tx_hash: str | None) -> str:
        """Why a mined transaction reverted: replay the call on the state of its block."""
        if not tx_hash:
            return "unknown reason"
        try:
            receipt = await self.sender.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
            await self.sender.simulate(tx, block=int(receipt["blockNumber"]))  # type: ignore[arg-type]
        except TxRevertedError as exc:
            return exc.reason
        except Exception as exc:
            return f"unknown reason ({type(exc).__name__})"
        return "unknown reason (the replay succeeds)"

    # ---------------------------------------------------------------- wallet
    async def _balance_loop(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sender.balance()  # logs a warning below FUNDING_MIN_BALANCE_ETH
            except Exception as exc:
                log.warning("funding wallet balance check failed: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.config.balance_check_s)

    # ---------------------------------------------------------------- status and metrics
    @property
    def ready(self) -> bool:
        return all(s.snapshot is not None for s in self.markets.values())

    def wedged(self, after_s: float) -> bool:
        now = self.clock()
        return any(now - s.heartbeat > after_s for s in self.markets.values())

    def _chain_now(self, state: MarketState) -> int:
        assert state.snapshot is not None
        return state.snapshot.chain_time + int(max(0.0, self.clock() - state.read_at))

    def market_status(self, state: MarketState) -> dict[str, Any]:
        return market_report(state, self.clock())

    @property
    def wallet_low(self) -> bool:
        balance, floor = self.sender.last_balance_wei, self.sender.min_balance_wei
        return balance is not None and bool(floor) and balance < floor

    def status(self) -> dict[str, Any]:
        return {
            "wallet": self.sender.address,
            "wallet_low": self.wallet_low,
            "wallet_balance_wei": (
                str(self.sender.last_balance_wei)
                if self.sender.last_balance_wei is not None
                else None
            ),
            "leader": self.leader.status(),
            "kafka": self.listener.status() if self.listener else None,
            "markets": [self.market_status(s) for s in self.markets.values()],
        }

    def metric_points(self) -> dict[str, list[tuple[float, dict[str, str]]]]:
        points: dict[str, list[tuple[float, dict[str, str]]]] = {
            name: [] for name in metrics.GAUGES
        }
        for state in self.markets.values():
            snap = state.snapshot
            if snap is None:
                continue
            attrs = {"market": state.ref.pair}
            now = self._chain_now(state)
            points["perpex_funding_seconds_to_next_window"].append(
                (max(0, snap.next_funding_time - now), attrs)
            )
            points["perpex_funding_overdue_seconds"].append(
                (max(0, now - snap.next_funding_time), attrs)
            )
            points["perpex_funding_rate"].append((float(rate_fraction(snap.rate_wad)), attrs))
            points["perpex_funding_last_update_time"].append((snap.last_funding_time, attrs))
        if self.sender.last_balance_wei is not None:
            points["perpex_funding_wallet_balance_eth"].append(
                (self.sender.last_balance_wei / 1e18, {"wallet": self.sender.address})
            )
        points["perpex_funding_leader"].append(
            (1 if self.leader.is_leader else 0, {"election": self.leader.name})
        )
        return points


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text
