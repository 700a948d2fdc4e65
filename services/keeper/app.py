"""The keeper service: wiring and its three loops.

- Kafka consumer (consumer.EventConsumer): keeps the position book current; bootstraps the
  owned partitions' positions from PostgreSQL on every assignment.
- Health loop (rounds.HealthRounds): polls eth_blockNumber every POLL_INTERVAL_MS; on each new
  block reads each served market's index price (one eth_call per market), ranks the book
  off-chain (ranking.Ranker), confirms the candidates within MARGIN_BUFFER of maintenance
  through getPositionsHealth (one eth_call per HEALTH_BATCH_SIZE positions, at that block), and
  hands the liquidatable ones to the executor in this keeper's dispatch order (races.py).
  Positions the view reports gone are dropped.
- Executor (executor.Executor): re-simulates each liquidation on the pending block and prices
  it (presend.PreSend), then sends and confirms it through TxSender.

Plus a slow loop that re-reads market parameters (maintenance ratio, penalty, reward share),
the native token's price when no health round reads it, and watches the wallet balance, and the
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
import time
from typing import Any

import asyncpg

from services.keeper.book import ApplyResult, PositionBook
from services.keeper.chain import ChainReader, MarketParams
from services.keeper.consumer import EventConsumer
from services.keeper.decisions import CheckTracker
from services.keeper.executor import Callbacks, Executor
from services.keeper.metrics import KeeperMetrics, LiquidatableClock
from services.keeper.partitions import Ownership
from services.keeper.pending import PendingSimulator, simulate_one
from services.keeper.presend import NativePrice, PreSend
from services.keeper.profit import to_wad
from services.keeper.ranking import Ranker
from services.keeper.rounds import HealthRounds, RoundStats, transient
from services.keeper.rpc import RpcCounter, counting_web3
from services.keeper.settings import KeeperSettings, KeeperTargets, resolve_targets
from services.keeper.store import BookStore, IndexerNotReadyError
from services.keeper.window import SendWindow
from shared.chain.abi import load_abi
from shared.chain.deployment import market_id_hex
from shared.chain.errors import ErrorDecoder
from shared.chain.tx import TxSender
from shared.config import ConfigError, check_markets
from shared.db import create_pool
from shared.dependencies import (
    Dependencies,
    StopRequested,
    broker,
    postgres,
    retry_transient,
    rpc,
)
from shared.health import HealthState

log = logging.getLogger("perpex.keeper")


class Keeper(HealthRounds):
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
        self.window = SendWindow(
            settings.liquidation_concurrency,
            settings.keeper_contested_concurrency,
            settings.keeper_contested_for_s,
        )
        self.latency = LiquidatableClock(lambda n: self.metrics.liquidation_latency.record(n))
        self.metrics = KeeperMetrics.of(
            self.sender,
            lambda: len(self.book),
            self.latency,
            send_window=lambda: (self.window.limit, self.window.contested),
        )
        self.native = NativePrice(
            to_wad(settings.keeper_native_price) if settings.keeper_native_price else None,
            market_id_hex(settings.keeper_native_price_market),
            self.chain,
        )
        self.market_params: dict[str, MarketParams] = {}
        self.pending_sim = PendingSimulator(
            self.w3_exec,
            self.targets.position_manager,
            self.sender.address,
            lambda t: simulate_one(self.sender.simulate, self.chain.liquidation_tx(t)),
            max_retries=settings.max_retries,
        )
        self.presend = PreSend(
            self.sender,
            self.chain,
            self.native,
            to_wad(settings.keeper_min_profit_ratio),
            self.market_params.get,
            self.pending_sim,
        )
        self.executor = Executor(
            self.sender,
            self.chain,
            Callbacks(self._liquidated, self._dropped, self._retry),
            self.metrics,
            concurrency=settings.liquidation_concurrency,
            max_pending=settings.max_pending_txs,
            presend=self.presend,
            window=self.window,
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
        """MARKETS must name markets the PositionManager lists (exit 2 otherwise); so must
        KEEPER_NATIVE_PRICE_MARKET when the gas cost is priced with it."""
        listed = await self.chain.market_ids()
        if not self.targets.discover_markets:
            check_markets(
                "keeper",
                {m: p or m for m, p in self.targets.markets.items()},
                listed,
                self.targets.known_pairs,
                self.targets.position_manager,
            )
        s = self.settings
        if s.profit_check and self.native.fixed is None:
            if self.native.market_id not in {m.lower() for m in listed}:
                raise ConfigError(
                    {
                        "KEEPER_NATIVE_PRICE_MARKET": f"{s.keeper_native_price_market} is not a "
                        f"market of PositionManager {self.targets.position_manager}: set "
                        "KEEPER_NATIVE_PRICE (the native token's price in collateral units), "
                        "name a market that prices it, or set KEEPER_MIN_PROFIT_RATIO=0"
                    },
                    "keeper",
                )
            await self.native.refresh()
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
        await self.pending_sim.close()
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
            params = await self.chain.market_params(market_id)
            self.market_params[market_id.lower()] = params
            state = self.book.market(market_id)
            state.set_mmr(params.mmr)
            if self.markets[market_id]:
                state.pair = self.markets[market_id]
        self._last_market_refresh = time.monotonic()

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
            "native_price": (self.native.current() or 0) / 1e18,
            "send_window": {"limit": self.window.limit, "contested": self.window.contested},
            "pending_simulations": {
                "batched": self.pending_sim.batching,
                "calls": self.pending_sim.calls,
                "liquidations": self.pending_sim.simulated,
            },
            "events": dict(self.consumer.stats) if self.consumer else {},
            "health_rpc_calls": self.health_rpc.total,
            "exec_rpc_calls": self.exec_rpc.total,
            "recovered_in_flight": self.recovered_in_flight,
        }
