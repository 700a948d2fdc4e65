"""The keeper service: wiring and its three loops.

- Kafka consumer (consumer.EventConsumer): keeps the position book current; bootstraps the
  owned partitions' positions from PostgreSQL on every assignment.
- Health loop: polls eth_blockNumber every POLL_INTERVAL_MS; on each new block reads each
  served market's index price (one eth_call per market), ranks the book off-chain
  (ranking.Ranker), confirms the candidates within MARGIN_BUFFER of maintenance through
  getPositionsHealth (one eth_call per HEALTH_BATCH_SIZE positions, at that block), and hands
  the liquidatable ones to the executor. Positions the view reports gone are dropped.
- Executor (executor.Executor): simulates, sends and confirms liquidations through TxSender.

Plus a slow loop that re-reads maintenance ratios and watches the wallet balance, and the
dependency watch (shared/dependencies.py): readiness drops while the RPC node, PostgreSQL or the
broker does not answer, and comes back with it.

Start-up waits (with backoff, logging what for, not ready meanwhile) for the RPC node (and
checks CHAIN_ID), PostgreSQL and the broker; every later step (balance, nonce reconciliation,
markets, pool, consumer group) is retried while it fails transiently, so a transient error
never kills the keeper. The sender reconciles the wallet's nonces with the chain: transactions
a previous run left pending are waited for (so a restarted keeper never sends a duplicate),
and a gap and what queues behind it are cancelled. MARKETS naming a pair the PositionManager
does not list stops it (exit 2). Shutdown (stop event, e.g. SIGTERM): no new work, broadcast
liquidations get up to SHUTDOWN_TIMEOUT_S to be mined, offsets are committed, the consumer
leaves the group.

A stuck sender (a nonce gap it cannot fill, a transaction not mined for STUCK_AFTER_S) is a
log line (the sender's), a metric (perpex_keeper_sender_stuck) and a readiness failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass
from typing import Any

import asyncpg
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter

from services.keeper.book import ApplyResult, PositionBook
from services.keeper.chain import ChainReader, RpcCallError
from services.keeper.consumer import EventConsumer
from services.keeper.decisions import Action, CheckTracker, decide
from services.keeper.executor import Callbacks, Executor
from services.keeper.metrics import KeeperMetrics, LiquidatableClock
from services.keeper.partitions import Ownership
from services.keeper.ranking import Candidate, Ranker
from services.keeper.rpc import RpcCounter, counting_web3
from services.keeper.settings import KeeperSettings, KeeperTargets, resolve_targets
from services.keeper.store import BookStore, IndexerNotReadyError
from shared.chain.abi import load_abi
from shared.chain.errors import ErrorDecoder, ErrorKind, classify_message
from shared.chain.tx import TxSender
from shared.config import ConfigError, check_markets
from shared.db import create_pool
from shared.dependencies import (
    Dependencies,
    StopRequested,
    broker,
    is_transient_failure,
    postgres,
    retry_transient,
    rpc,
)
from shared.health import HealthState
from shared.service import watchdog, wedged_after

log = logging.getLogger("perpex.keeper")

# A head lower than the last one seen by more than this is taken for a rewound chain (a
# rollback); less is a lagging answer (a load-balanced provider) and is not read again.
REWIND_BLOCKS = 64


def transient(exc: BaseException) -> bool:
    """Failures the keeper rides out (retried with backoff): the dependencies' transient ones
    and JSON-RPC error answers that say so."""
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


class Keeper:
    def __init__(self, settings: KeeperSettings, health: HealthState | None = None):
        self.settings = settings
        self.health = health or HealthState()
        self.health.set_status(self.status)
        self.targets: KeeperTargets = resolve_targets(settings)
        self.health_rpc = RpcCounter()
        self.exec_rpc = RpcCounter()
        self.w3_health = counting_web3(settings.rpc_url, self.health_rpc, settings.rpc_timeout_s)
        self.w3_exec = counting_web3(settings.rpc_url, self.exec_rpc, settings.rpc_timeout_s)
        self.chain = ChainReader(self.w3_health, self.targets.position_manager)
        key = settings.wallet_key("keeper")
        if key is None:  # load_keeper_settings already refuses this
            raise ConfigError({"KEEPER_PRIVATE_KEY": "is required"}, "keeper")
        self.sender = TxSender(
            self.w3_exec,
            key,
            settings.chain_id,
            gas_multiplier=settings.gas_multiplier,
            max_retries=settings.max_retries,
            error_decoder=ErrorDecoder([load_abi("PositionManager")]),
            replace_after_s=settings.replace_after_s,
            confirm_timeout_s=settings.confirm_timeout_s,
            poll_s=min(settings.poll_interval, 0.5),
            min_balance_wei=settings.min_balance_wei,
            on_low_balance=self._on_low_balance,
            fee_cache_s=min(settings.poll_interval, 1.0),
            balance_cache_s=1.0,
            stuck_after_s=settings.stuck_after_s,
            backoff_initial_s=min(0.5, settings.poll_interval),
        )
        self.book = PositionBook(owns=lambda _t: False)
        self.ranker = Ranker(settings.margin_buffer)
        self.tracker = CheckTracker()
        self.latency = LiquidatableClock(lambda n: self.metrics.liquidation_latency.record(n))
        self.metrics = KeeperMetrics.of(self.sender, lambda: len(self.book), self.latency)
        self.executor = Executor(
            self.sender,
            self.chain,
            Callbacks(self._liquidated, self._dropped, self._retry),
            self.metrics,
            concurrency=settings.liquidation_concurrency,
            max_pending=settings.max_pending_txs,
        )
        self.markets: dict[str, str | None] = dict(self.targets.markets)  # served markets
        self.prices: dict[str, int] = {}
        self.pool: asyncpg.Pool | None = None
        self.store: BookStore | None = None
        self.consumer: EventConsumer | None = None
        self.rounds = RoundStats()
        self.heartbeat = time.monotonic()
        self.recovered_in_flight = 0
        self.low_balance_warnings = 0
        self.liquidated: list[int] = []
        self.round_listeners: list[Any] = []  # called with each round's summary (benchmark)
        self._stop = asyncio.Event()
        self._tasks: list[asyncio.Task[Any]] = []
        self._last_market_refresh = 0.0
        self._last_sweep: float | None = None  # None: sweep at the first round
        self.stopped = False
        self._failure: RuntimeError | None = None  # a loop that ended before stop
        self._refresh_pending: set[int] = set()  # chain re-reads that failed, retried
        # token -> block of its last mined liquidation: a round reading an older block (a
        # lagging node) must not take it for still liquidatable
        self._settled: dict[int, int] = {}
        self.dependencies = Dependencies(
            [
                rpc(settings.rpc_url, settings.chain_id, settings.rpc_timeout_s),
                postgres(settings.db_uri),
                broker(settings.kafka_bootstrap_servers),
            ],
            self.health,
            log,
            interval_s=settings.dependency_check_s,
        )

    # ------------------------------------------------------------------ lifecycle
    async def start(self, stop: asyncio.Event | None = None) -> None:
        """Wait for the dependencies, reconcile the wallet, check the markets, join the group.
        Raises ConfigError (a wrong CHAIN_ID or MARKETS), StopRequested (`stop` set first)."""
        if stop is not None:
            self._stop = stop
        s = self.settings
        self.health.set_ready(False, "starting: waiting for RPC, PostgreSQL and the broker")
        if not await self.dependencies.wait(self._stop):
            raise StopRequested("stopped while waiting for dependencies")
        await self._retrying("reading the wallet balance", self.sender.balance)
        log.info(
            "keeper wallet %s, %.6f ETH",
            self.sender.address,
            (self.sender.last_balance_wei or 0) / 1e18,
        )
        self.health.set_ready(False, "starting: reconciling the wallet's nonces with the chain")
        result = await self._retrying(
            "reconciling the wallet's nonces",
            lambda: self.sender.reconcile(s.in_flight_wait_s),
        )
        self.recovered_in_flight = result.found
        await self._retrying("reading the markets", self._check_markets)
        self.pool = await self._retrying(
            "connecting to PostgreSQL", lambda: create_pool(s.db_uri, min_size=1, max_size=4)
        )
        self.store = BookStore(self.pool)
        self.consumer = await self._retrying("joining the consumer group", self._start_consumer)

    async def _retrying(self, what: str, fn: Any) -> Any:
        return await retry_transient(what, fn, self._stop, log, transient)

    async def _start_consumer(self) -> EventConsumer:
        s = self.settings
        consumer = EventConsumer(
            s.kafka_bootstrap_servers,
            s.kafka_topic,
            s.keeper_group_id,
            self.book,
            self._on_assigned,
            self._on_revoked,
            self._on_results,
            self.metrics,
        )
        try:
            await consumer.start()
        except BaseException:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(consumer.consumer.stop(), 5)
            raise
        return consumer

    async def _check_markets(self) -> None:
        """MARKETS must name markets the PositionManager lists (exit 2 otherwise)."""
        if not self.targets.discover_markets:
            check_markets(
                "keeper",
                {m: p or m for m, p in self.targets.markets.items()},
                await self.chain.market_ids(),
                self.targets.known_pairs,
                self.targets.position_manager,
            )
        await self._refresh_markets()

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Run until `stop` (or self.stop()); then shut down gracefully."""
        if stop is not None:
            self._stop = stop
        assert self.consumer is not None, "start() first"
        self._tasks = [
            asyncio.create_task(self.consumer.run(self._stop), name="keeper-consumer"),
            asyncio.create_task(self._health_loop(), name="keeper-health"),
            asyncio.create_task(self._slow_loop(), name="keeper-slow"),
            asyncio.create_task(self._watchdog(), name="keeper-watchdog"),
            asyncio.create_task(self.dependencies.watch(self._stop), name="keeper-dependencies"),
        ]
        for task in self._tasks:
            task.add_done_callback(self._task_ended)
        try:
            await self._stop.wait()
        finally:
            await self.shutdown()
        if self._failure is not None:
            raise self._failure

    def _task_ended(self, task: asyncio.Task[None]) -> None:
        """Every loop runs until stop: one that ends before (an unexpected exception) must not
        leave a keeper that looks ready while its book no longer follows the chain. Stop,
        and exit non-zero so the pod is restarted."""
        if task.cancelled() or self._stop.is_set():
            return
        exc = task.exception()
        detail = f"{type(exc).__name__}: {exc}" if exc is not None else "returned"
        log.critical("%s ended unexpectedly (%s); stopping", task.get_name(), detail)
        failure = RuntimeError(f"{task.get_name()} ended unexpectedly ({detail})")
        failure.__cause__ = exc
        self._failure = failure
        self.health.set_ready(False, f"{task.get_name()} failed")
        self._stop.set()

    def stop(self) -> None:
        self._stop.set()

    async def shutdown(self) -> None:
        if self.stopped:
            return
        self.stopped = True
        self._stop.set()
        self.health.set_ready(False, "shutting down")
        for task in self._tasks:
            with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError, Exception):
                await asyncio.wait_for(asyncio.shield(task), 5)
            task.cancel()
        self._tasks = []
        deadline = time.monotonic() + self.settings.shutdown_timeout_s
        left = await self.executor.shutdown(self.settings.shutdown_timeout_s)
        if not await self.sender.wait_pending(max(0.0, deadline - time.monotonic())):
            left = max(left, len(self.sender.pending))
        if left:
            log.warning("%d liquidations still unconfirmed at the shutdown deadline", left)
        await self.executor.abort()
        if self.consumer is not None:
            await self.consumer.stop()
        await self.close()
        log.info("keeper stopped")

    async def close(self) -> None:
        if self.pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self.pool.close(), 10)
            self.pool = None
        await self.sender.close()
        for w3 in (self.w3_health, self.w3_exec):
            with contextlib.suppress(Exception):
                await w3.provider.disconnect()

    # ------------------------------------------------------------------ rebalance hooks
    async def _on_assigned(self, ownership: Ownership, owned: set[int]) -> None:
        assert self.store is not None
        self.book.set_owner_filter(ownership.owns_token)
        delay = 0.5
        while True:
            try:
                snap = await self.store.snapshot(owns=ownership.owns_token)
                break
            except (IndexerNotReadyError, OSError, asyncpg.PostgresError) as exc:
                if self._stop.is_set():
                    return
                log.warning("book bootstrap: %s; retrying in %.1fs", exc, delay)
                self.health.set_ready(False, f"bootstrap: {exc}")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 10.0)
        # The snapshot replaces what this replica held for its partitions.
        for token in [t for t in self.book.positions]:
            self.book.remove(token, tombstone=False)
        loaded = sum(1 for p in snap.positions if self.book.upsert(p))
        for market_id, pair in snap.pairs.items():
            state = self.book.market(market_id)
            state.pair = state.pair or pair
        log.info(
            "bootstrapped %d open positions from PostgreSQL (indexer at block %s)",
            loaded,
            snap.synced_block,
        )

    async def _on_revoked(self, ownership: Ownership, parts: set[int]) -> None:
        def revoked(token: int) -> bool:
            return ownership.partition_of_token(token) in parts

        # Out of the book first, before waiting on anything: a health round running meanwhile
        # must not start a liquidation the partition's next owner will start too.
        remaining = ownership.owned - parts
        self.book.set_owner_filter(
            lambda t: bool(remaining) and ownership.partition_of_token(t) in remaining
        )
        left = await self.executor.release(revoked, self.settings.shutdown_timeout_s)
        if left:
            log.warning("%d liquidations of revoked partitions still unconfirmed", left)

    async def _on_results(self, results: list[ApplyResult]) -> None:
        refresh = {t for r in results for t in r.refresh}
        markets = {m for r in results for m in r.markets}
        await self._refresh_positions(refresh)
        if markets:
            for m in markets:
                if self.targets.discover_markets:
                    self.markets.setdefault(m, self.book.market(m).pair)
            try:
                await self._refresh_markets()
            except Exception as exc:  # the slow loop refreshes them again
                log.warning("could not refresh markets: %s: %s", type(exc).__name__, exc)

    async def _refresh_positions(self, tokens: set[int]) -> None:
        """Read positions again from the chain (a reverted event, a margin change of one the
        book does not hold). One that cannot be read now is read again at the next health
        round: its event is already acknowledged, so nothing else would bring it back."""
        for token in sorted(tokens):
            try:
                _, pos = await self.chain.position(token)
            except Exception as exc:
                log.warning("could not re-read position %d (again next round): %s", token, exc)
                self._refresh_pending.add(token)
                continue
            self._refresh_pending.discard(token)
            if not self.book.owns(token):
                continue  # its partition moved away meanwhile
            if pos is None:
                self.book.remove(token, tombstone=False)
            else:
                held = self.book.get(token)
                pos.owner = held.owner if held else pos.owner
                self.book.upsert(pos, force=True)
            self.tracker.invalidate(token)

    # ------------------------------------------------------------------ executor callbacks
    def _liquidated(self, token: int, receipt: dict[str, Any]) -> None:
        """Mined: the token leaves 'in flight'. A liquidation may be partial (the position
        stays, smaller), so the position is not removed here: its events update the book, and
        the next round reads the chain (gone: dropped; still liquidatable: liquidated again)."""
        self.liquidated.append(token)
        block = receipt.get("blockNumber")
        if isinstance(block, int):
            self._settled[token] = block
            self.latency.mined(token, block)
        self.tracker.invalidate(token)
        self.ranker.forget(token)

    def _dropped(self, token: int, reason: str) -> None:
        log.info("dropped position %d (%s)", token, reason)
        self.book.remove(token, tombstone=True)
        self.tracker.invalidate(token)
        self.ranker.forget(token)
        self._settled.pop(token, None)
        self.latency.forget(token)

    def _retry(self, token: int, reason: str) -> None:
        self.tracker.invalidate(token)

    def _on_low_balance(self, balance_wei: int) -> None:
        self.low_balance_warnings += 1
        self.metrics.low_balance.add(1)

    # ------------------------------------------------------------------ markets
    async def _refresh_markets(self) -> None:
        if self.targets.discover_markets:
            try:
                for m in await self.chain.market_ids():
                    self.markets.setdefault(m, None)
            except Exception as exc:
                log.warning("could not list markets: %s", exc)
        for market_id in list(self.markets):
            mmr = await self.chain.maintenance_margin_ratio(market_id)
            state = self.book.market(market_id)
            state.set_mmr(mmr)
            if self.markets[market_id]:
                state.pair = self.markets[market_id]
        self._last_market_refresh = time.monotonic()

    async def _watchdog(self) -> None:
        """Liveness: the health loop must come around (even failing, it backs off <= 30 s)."""
        wedged_s = wedged_after(self.settings.poll_interval)
        await watchdog(self.health, lambda: self.heartbeat, wedged_s, self._stop)

    async def _slow_loop(self) -> None:
        """Market ratios every MARKET_REFRESH_S; the wallet balance."""
        interval = self.settings.market_refresh_s
        while not self._stop.is_set():
            await _wait(self._stop, min(interval, 10.0))
            if self._stop.is_set():
                return
            try:
                await self.sender.balance()  # warns (log + metric) below the threshold
                if time.monotonic() - self._last_market_refresh >= interval:
                    await self._refresh_markets()
            except Exception as exc:
                log.warning("periodic refresh failed: %s", exc)

    # ------------------------------------------------------------------ health
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
                delay = min(30.0, poll * 2 ** min(failures, 8)) * random.uniform(0.8, 1.2)
                log.warning(
                    "chain read failed (%s: %s); retry %d in %.2fs",
                    type(exc).__name__,
                    exc,
                    failures,
                    delay,
                )
                if failures >= 2:  # one lost answer is not an outage
                    self.health.set_ready(False, f"chain reads failing: {type(exc).__name__}")
                await _wait(self._stop, delay)
                continue
            await _wait(self._stop, poll)

    def _update_readiness(self) -> None:
        stuck = self.sender.stuck()
        if stuck is not None:
            self.health.set_ready(False, f"transaction sender stuck: {stuck}")
        elif self.consumer is None or self.consumer.assignments == 0:
            self.health.set_ready(False, "waiting for partition assignment")
        else:
            self.health.set_ready(True, f"watching {len(self.book)} positions")

    async def health_round(self, block: int) -> dict[str, Any]:
        t0 = time.perf_counter()
        calls_before = self.health_rpc.total
        self.rounds.blocks += 1
        self.rounds.last_block = block
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
        size = self.settings.health_batch_size
        batches = [to_check[i : i + size] for i in range(0, len(to_check), size)]
        results = await asyncio.gather(
            *(self._read(lambda b=b: self.chain.positions_health(b, block)) for b in batches)  # type: ignore[misc]
        )
        started = 0
        for batch_result in results:
            for h in batch_result:
                c = by_token.get(h.token_id)
                action = decide(h, self.executor.in_flight(h.token_id))
                self.latency.read(h, block, self._settled.get(h.token_id))
                if c is None:  # swept, not a candidate: the mirror said far from maintenance
                    if action is Action.LIQUIDATE:
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
                if action is Action.DROP:
                    held = self.book.get(h.token_id)
                    if held is not None and held.updated[0] > block:
                        # Opened (or changed) after the block this round reads: "gone" at
                        # that block only means "not there yet".
                        continue
                    self._dropped(h.token_id, "gone")
                    self.metrics.liquidations_dropped.add(1, {"reason": "gone"})
                elif action is Action.LIQUIDATE:
                    pos = self.book.get(h.token_id)
                    if pos is None:
                        continue
                    settled = self._settled.get(h.token_id)
                    if settled is not None:
                        if block < settled:
                            continue  # read before our liquidation was mined: stale
                        del self._settled[h.token_id]
                    if self.executor.liquidate(
                        h.token_id, pos.market_id, h.margin, h.maintenance, block, pos.trace
                    ):
                        started += 1
        self.tracker.forget_missing(self.book.positions)
        calls = self.health_rpc.total - calls_before + 1  # + this block's eth_blockNumber
        self.metrics.health_rpc_calls.add(calls)
        self.metrics.health_checked.add(len(to_check))
        self.rounds.rounds += 1
        self.rounds.candidates += len(cands)
        self.rounds.checked += len(to_check)
        self.rounds.batches += len(batches)
        self.rounds.liquidations_started += started
        self.rounds.last_round_ms = (time.perf_counter() - t0) * 1000
        summary = {
            "block": block,
            "sweep": sweep,
            "candidates": len(cands),
            "checked": len(to_check),
            "batches": len(batches),
            "liquidations_started": started,
            "ms": round(self.rounds.last_round_ms, 2),
        }
        if cands or started:
            log.info(
                "block %d: %d candidates, %d checked in %d calls, %d liquidations started (%.1f ms)",
                block,
                len(cands),
                len(to_check),
                len(batches),
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

    # ------------------------------------------------------------------ status
    def status(self) -> dict[str, Any]:
        return {
            "wallet": self.sender.address,
            "balance_eth": (self.sender.last_balance_wei or 0) / 1e18,
            "positions": len(self.book),
            "partitions": sorted(self.consumer.ownership.owned) if self.consumer else [],
            "last_block": self.rounds.last_block,
            "in_flight": len(self.executor.jobs),
            "pending_txs": len(self.sender.pending),
            "sender_stuck": self.sender.stuck(),
            "oldest_pending_tx_s": round(self.sender.oldest_pending_s(), 1),
            "sender": {
                "sent": self.sender.stats.sent,
                "replaced": self.sender.stats.replaced,
                "rebroadcast": self.sender.stats.rebroadcast,
                "cancelled": self.sender.stats.cancelled,
            },
            "liquidations": dict(self.executor.stats),
            "events": dict(self.consumer.stats) if self.consumer else {},
            "health_rpc_calls": self.health_rpc.total,
            "exec_rpc_calls": self.exec_rpc.total,
            "recovered_in_flight": self.recovered_in_flight,
        }


async def _wait(stop: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
