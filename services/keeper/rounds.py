"""The keeper's loops (a mixin of app.Keeper): the health loop and one health round, the slow
loop (market ratios, wallet balance, native price) and the liveness watchdog.

Each new block: one marketState read per served market (index price and both sides' funding
indexes, pinned to the block), the off-chain ranking of the book, getPositionsHealth for the
candidates (and, every FULL_SWEEP_S, for every position), then the liquidatable ones are handed
to the executor in this keeper's dispatch order (races.py): insolvent first, then an order keyed
by the wallet address, so two keepers competing for the same positions take different paths.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from services.keeper.decisions import CheckTracker, LiquidationAction, OnchainHealth, decide
from services.keeper.metrics import LiquidatableClock
from services.keeper.races import dispatch_order
from services.keeper.ranking import Candidate, Ranker
from shared.backoff import backoff_delay
from shared.chain.errors import ErrorKind, classify_message
from shared.dependencies import is_transient_failure
from shared.service import watchdog, wedged_after

if TYPE_CHECKING:
    from services.keeper.book import PositionBook
    from services.keeper.chain import ChainReader
    from services.keeper.consumer import EventConsumer
    from services.keeper.executor import Executor
    from services.keeper.metrics import KeeperMetrics
    from services.keeper.presend import NativePrice
    from services.keeper.rpc import RpcCounter
    from services.keeper.settings import KeeperSettings
    from services.keeper.window import SendWindow
    from shared.chain.tx import TxSender
    from shared.health import HealthState

log = logging.getLogger("perpex.keeper")

# A head lower than the last one seen by more than this is taken for a rewound chain (a
# rollback); less is a lagging answer (a load-balanced provider) and is not read again.
REWIND_BLOCKS = 64


def transient(exc: BaseException) -> bool:
    """Failures the keeper rides out (retried with backoff): the dependencies' transient ones
    and JSON-RPC error answers that say so."""
    from services.keeper.chain import RpcCallError

    if isinstance(exc, RpcCallError):
        return classify_message(exc.message) == ErrorKind.TRANSIENT
    return is_transient_failure(exc)


@dataclass
class RoundStats:
    blocks: int = 0
    rounds: int = 0
    candidates: int = 0
    checked: int = 0
    batches: int = 0
    liquidations_started: int = 0
    last_block: int | None = None
    last_round_ms: float = 0.0


class HealthRounds:
    """The health loop; app.Keeper provides the state below."""

    settings: KeeperSettings
    health: HealthState
    chain: ChainReader
    sender: TxSender
    book: PositionBook
    ranker: Ranker
    tracker: CheckTracker
    executor: Executor
    window: SendWindow
    metrics: KeeperMetrics
    native: NativePrice
    health_rpc: RpcCounter
    consumer: EventConsumer | None
    markets: dict[str, str | None]
    prices: dict[str, int]
    rounds: RoundStats
    round_listeners: list[Any]
    heartbeat: float
    _stop: asyncio.Event
    _settled: dict[int, int]
    latency: LiquidatableClock
    _refresh_pending: set[int]
    _last_sweep: float | None

    _last_market_refresh: float

    def _dropped(self, token: int, reason: str) -> None:
        raise NotImplementedError

    async def _refresh_markets(self) -> None:
        raise NotImplementedError

    async def _refresh_positions(self, tokens: set[int]) -> None:
        raise NotImplementedError

    async def _health_loop(self) -> None:
        failures = 0
        last: int | None = None
        poll = self.settings.poll_interval
        while not self._stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                block = await self.chain.block_number()
                if self._refresh_pending:
                    await self._refresh_positions(set(self._refresh_pending))
                if last is None or block > last or block < last - REWIND_BLOCKS:
                    # Only forward: an answer a few blocks behind (a lagging node of a
                    # load-balanced provider) holds nothing a later round has not read.
                    self.sender.refresh_in_background()  # fees warm for this block's sends
                    await self.health_round(block)
                    last = block
                if failures:
                    log.info("chain reads recovered after %d failures", failures)
                failures = 0
                self._update_readiness()
            except Exception as exc:
                failures += 1
                self.metrics.rpc_errors.add(1)
                delay = backoff_delay(failures, 2 * poll, 30.0, jitter=0.2)
                log.warning(
                    "chain read failed (%s: %s); retry %d in %.2fs",
                    type(exc).__name__,
                    exc,
                    failures,
                    delay,
                )
                if failures >= 2:  # one lost answer is not an outage
                    self.health.set_ready(False, f"chain reads failing: {type(exc).__name__}")
                await wait_for_stop(self._stop, delay)
                continue
            await wait_for_stop(self._stop, poll)

    async def _watchdog(self) -> None:
        """Liveness: the health loop must come around (even failing, it backs off <= 30 s)."""
        wedged_s = wedged_after(self.settings.poll_interval)
        await watchdog(self.health, lambda: self.heartbeat, wedged_s, self._stop)

    async def _slow_loop(self) -> None:
        """Market ratios every MARKET_REFRESH_S; the wallet balance."""
        interval = self.settings.market_refresh_s
        while not self._stop.is_set():
            await wait_for_stop(self._stop, min(interval, 10.0))
            if self._stop.is_set():
                return
            try:
                await self.sender.balance()  # warns (log + metric) below the threshold
                if self.settings.profit_check:
                    await self.native.refresh()  # unless the health rounds read it
                if time.monotonic() - self._last_market_refresh >= interval:
                    await self._refresh_markets()
            except Exception as exc:
                log.warning("periodic refresh failed: %s", exc)

    def _update_readiness(self) -> None:
        if self._stop.is_set():
            return  # stopping (shut down, or a loop failed): readiness stays down
        stuck = self.sender.stuck()
        if stuck is not None:
            self.health.set_ready(False, f"transaction sender stuck: {stuck}")
        elif self.consumer is None or self.consumer.assignments == 0:
            self.health.set_ready(False, "waiting for partition assignment")
        else:
            self.health.set_ready(True, f"watching {len(self.book)} positions")

    async def health_round(self, block: int) -> dict[str, Any]:
        """One block: select the positions to read, confirm them on-chain, act on what the
        chain says, record the round."""
        t0 = time.perf_counter()
        calls_before = self.health_rpc.total
        self.rounds.blocks += 1
        self.rounds.last_block = block
        await self._read_markets(block)
        cands, by_token, to_check, sweep = self._select()
        size = self.settings.health_batch_size
        batches = [to_check[i : i + size] for i in range(0, len(to_check), size)]
        results = await asyncio.gather(
            *(self._read(lambda b=b: self.chain.positions_health(b, block)) for b in batches)  # type: ignore[misc]
        )
        targets = self._confirm([h for r in results for h in r], by_token, block)
        started = self._act(targets, block)
        self.tracker.forget_missing(self.book.positions)
        calls = self.health_rpc.total - calls_before + 1  # + this block's eth_blockNumber
        return self._record(
            block, t0, calls, len(cands), len(to_check), len(batches), started, sweep
        )

    async def _read_markets(self, block: int) -> None:
        """Each served market's index price and cumulative funding at `block`."""
        markets = list(self.markets)
        states = await asyncio.gather(
            *(self._read(lambda m=m: self.chain.market_state(m, block)) for m in markets)  # type: ignore[misc]
        )
        self.prices = {}
        for m, (price, long, short) in zip(markets, states, strict=True):
            self.prices[m] = price
            self.book.set_cumulative(m, long, short)  # funding accrues every second
        for m, p in self.prices.items():
            if p == 0:
                log.warning("market %s: the oracle does not answer (no liquidation possible)", m)
        self.native.observe(self.prices)

    def _select(self) -> tuple[list[Candidate], dict[int, Candidate], list[int], bool]:
        """The ranked candidates due a check, plus (now and then) every other position."""
        cands = self.ranker.candidates(self.book, self.prices)
        by_token: dict[int, Candidate] = {}
        for cand in cands:
            if self.tracker.needs_check(
                cand.token_id, cand.stamp, self.executor.in_flight(cand.token_id)
            ):
                by_token[cand.token_id] = cand
        to_check = list(by_token)
        sweep = self._sweep_due()
        if sweep:
            # Insurance against a mirror that is wrong (a missed event, stale funding): read
            # every position once in a while, not only the ranked candidates.
            to_check += [
                t
                for t in self.book.positions
                if t not in by_token and not self.executor.in_flight(t)
            ]
        return cands, by_token, to_check, sweep

    def _confirm(
        self, healths: list[OnchainHealth], by_token: dict[int, Candidate], block: int
    ) -> dict[int, OnchainHealth]:
        """What the chain says of each position read: dropped when gone, a liquidation target
        when liquidatable; the mirror's disagreements counted."""
        targets: dict[int, OnchainHealth] = {}
        for h in healths:
            c = by_token.get(h.token_id)
            action = decide(h, self.executor.in_flight(h.token_id))
            self.latency.read(h, block, self._settled.get(h.token_id))
            if c is None:  # swept, not a candidate: the mirror said far from maintenance
                if action is LiquidationAction.LIQUIDATE:
                    self.metrics.mirror_mismatch.add(1)
                    log.warning("position %d is liquidatable but was not ranked", h.token_id)
            elif h.exists and h.index_price and h.liquidatable != c.liquidatable:
                self.metrics.mirror_mismatch.add(1)
                log.debug(
                    "mirror disagrees on %d: off-chain %s/%s, chain %s/%s",
                    h.token_id,
                    c.health.margin,
                    c.health.maintenance,
                    h.margin,
                    h.maintenance,
                )
            if c is not None:
                self.tracker.record(h.token_id, c.stamp, action)
            if action is LiquidationAction.DROP:
                held = self.book.get(h.token_id)
                if held is not None and held.updated[0] > block:
                    # Opened (or changed) after the block this round reads: "gone" at
                    # that block only means "not there yet".
                    continue
                self._dropped(h.token_id, "gone")
                self.metrics.liquidations_dropped.add(1, {"reason": "gone"})
            elif action is LiquidationAction.LIQUIDATE:
                settled = self._settled.get(h.token_id)
                if settled is not None:
                    if block < settled:
                        continue  # read before our liquidation was mined: stale
                    del self._settled[h.token_id]
                if h.token_id in self.book:
                    targets[h.token_id] = h
        return targets

    def _act(self, targets: dict[int, OnchainHealth], block: int) -> int:
        """Start the liquidations, in this keeper's own order (races.py: competing keepers
        take different paths). Returns how many started."""
        started = 0
        salt = bytes.fromhex(self.sender.address[2:])
        for token in dispatch_order(((t, h.margin) for t, h in targets.items()), salt):
            h, pos = targets[token], self.book.get(token)
            if pos is not None and self.executor.liquidate(
                token,
                pos.market_id,
                h.margin,
                h.maintenance,
                block,
                pos.trace,
                size=pos.size,
                index_price=h.index_price,
            ):
                started += 1
        if started:  # narrow: a competitor may have appeared (window.py)
            self.window.restart(self.executor.to_send)
        return started

    def _record(
        self,
        block: int,
        t0: float,
        calls: int,
        candidates: int,
        checked: int,
        batches: int,
        started: int,
        sweep: bool,
    ) -> dict[str, Any]:
        """The round's counters, metrics, log line and listeners."""
        self.metrics.health_rpc_calls.add(calls)
        self.metrics.health_checked.add(checked)
        self.rounds.rounds += 1
        self.rounds.candidates += candidates
        self.rounds.checked += checked
        self.rounds.batches += batches
        self.rounds.liquidations_started += started
        self.rounds.last_round_ms = (time.perf_counter() - t0) * 1000
        summary = {
            "block": block,
            "sweep": sweep,
            "candidates": candidates,
            "checked": checked,
            "batches": batches,
            "liquidations_started": started,
            "ms": round(self.rounds.last_round_ms, 2),
        }
        if candidates or started:
            log.info(
                "block %d: %d candidates, %d checked in %d calls, %d liquidations started (%.1f ms)",
                block,
                candidates,
                checked,
                batches,
                started,
                self.rounds.last_round_ms,
            )
        for listener in self.round_listeners:
            listener(summary)
        return summary

    async def _read(self, call: Any) -> Any:
        """One read of a round, retried twice at once on a transient failure (a lost answer
        would otherwise throw the whole round away and wait for the loop's backoff)."""
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(3),
            wait=wait_exponential_jitter(multiplier=0.05, max=0.5, jitter=0.05),
            retry=retry_if_exception(transient),
            reraise=True,
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable")  # pragma: no cover

    def _sweep_due(self) -> bool:
        every = self.settings.full_sweep_s
        if every <= 0 or not self.book.positions:
            return False
        now = time.monotonic()
        if self._last_sweep is None or now - self._last_sweep >= every:
            self._last_sweep = now
            return True
        return False


async def wait_for_stop(stop: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
