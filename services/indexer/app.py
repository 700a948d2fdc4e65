"""Wiring: settings -> RPC client, database (migrated), decoder, sync loop and outbox drainer.

Used by the CLI (`perpex indexer`), the benchmark and the tests, so all run the same code.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import asyncpg
from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector

from services.indexer.bridge import BridgeFollower, make_follower
from services.indexer.chunking import Outcome
from services.indexer.event_specs import load_event_table
from services.indexer.fetcher import FetchConfig, FetchPool
from services.indexer.outbox import OutboxDrainer
from services.indexer.rpc import JsonRpc, RpcError
from services.indexer.settings import IndexerSettings, IndexTargets, resolve_targets
from services.indexer.store import WRITER_LOCK_KEY, Store
from services.indexer.sync import Indexer
from shared.config import ConfigError, check_chain_id, check_markets
from shared.db import create_pool
from shared.dependencies import Dependencies, broker, is_transient_failure, postgres, rpc
from shared.health import HealthState

log = logging.getLogger(__name__)


def dependencies(settings: IndexerSettings, health: HealthState | None = None) -> Dependencies:
    """The RPC node and PostgreSQL are waited for at start; the broker is watched (readiness)
    but not waited for: without it the indexer goes on writing PostgreSQL and the outbox."""
    return Dependencies(
        [
            rpc(settings.rpc_url, settings.chain_id, settings.rpc_timeout_s),
            postgres(settings.db_uri),
            broker(settings.kafka_bootstrap_servers, required=False),
        ],
        health,
        log,
        interval_s=settings.dependency_check_s,
    )


def transient(exc: BaseException) -> bool:
    """Failures of a start-up step that a dependency coming back would cure."""
    if isinstance(exc, RpcError):
        return exc.outcome in (Outcome.TRANSIENT, Outcome.TIMEOUT, Outcome.RATE_LIMITED)
    return is_transient_failure(exc)


_MARKET_IDS = "0x" + function_signature_to_4byte_selector("marketIds()").hex()


async def check_market_filter(rpc: JsonRpc, targets: IndexTargets) -> None:
    """MARKETS must name markets the PositionManager lists (exit 2 otherwise): a typo would
    index nothing, silently."""
    if targets.market_filter is None:
        return
    raw = await rpc.call(
        "eth_call", [{"to": targets.position_manager, "data": _MARKET_IDS}, "latest"]
    )
    (ids,) = abi_decode(["bytes32[]"], bytes.fromhex(str(raw).removeprefix("0x")))
    on_chain = ["0x" + bytes(m).hex() for m in ids]
    check_markets(
        "indexer",
        {mid: targets.markets[mid].pair for mid in sorted(targets.market_filter)},
        on_chain,
        {mid: info.pair for mid, info in targets.markets.items()},
        targets.position_manager,
    )


@dataclass
class IndexerApp:
    settings: IndexerSettings
    targets: IndexTargets
    rpc: JsonRpc
    pool: asyncpg.Pool
    store: Store
    indexer: Indexer
    drainer: OutboxDrainer
    lock_conn: asyncpg.Connection
    bridge: BridgeFollower | None = None  # the bridge's events on both chains (bridge.py)

    async def run(self, stop: asyncio.Event, until_caught_up: bool = False) -> None:
        """Sync (and drain) until `stop`; with until_caught_up, return once synced to the
        target and the outbox is empty (or `stop`)."""
        drainer_stop = asyncio.Event()
        drain_task = asyncio.create_task(self.drainer.run(drainer_stop), name="outbox")
        bridge_task = (
            asyncio.create_task(self.bridge.run(stop, until_caught_up), name="bridge")
            if self.bridge is not None
            else None
        )
        try:
            await self.indexer.run(stop, until_caught_up=until_caught_up)
            if until_caught_up and not stop.is_set():
                await self.wait_drained(stop)
            if bridge_task is not None and until_caught_up:
                await bridge_task
        finally:
            if bridge_task is not None:
                bridge_task.cancel()
                with contextlib.suppress(BaseException):
                    await bridge_task
            drainer_stop.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(drain_task, 10)
            # What could not be sent stays in the outbox for the next start.
            await self.drainer.flush(within=3.0)
            await self.drainer.close()

    async def wait_drained(self, stop: asyncio.Event, poll: float = 0.01) -> None:
        while not stop.is_set():
            if await self.store.outbox.pending_messages() == 0:
                return
            self.drainer.notify()
            await asyncio.sleep(poll)

    def status(self) -> dict[str, Any]:
        return {
            **self.indexer.status(),
            "kafka_connected": self.drainer.connected,
            "kafka_sent": self.drainer.sent,
            "kafka_last_error": self.drainer.last_error,
            **({"bridge": self.bridge.status()} if self.bridge is not None else {}),
        }


@contextlib.asynccontextmanager
async def open_app(
    settings: IndexerSettings,
    lock_wait: float | None = None,
    stop: asyncio.Event | None = None,
) -> AsyncIterator[IndexerApp]:
    """Connect, check the chain id, migrate, take the writer lock, and build the service.
    `stop` set while waiting for the lock (a standby told to shut down): StoppedWaiting."""
    targets = resolve_targets(settings)
    rpc = JsonRpc(settings.rpc_url, settings.rpc_timeout_s, settings.max_retries)
    pool: asyncpg.Pool | None = None
    lock_conn: asyncpg.Connection | None = None
    fetch_pool: FetchPool | None = None
    bridge: BridgeFollower | None = None
    try:
        check_chain_id(settings, await rpc.chain_id())
        await check_market_filter(rpc, targets)
        pool = await create_pool(settings.db_uri, min_size=2, max_size=6)
        table = load_event_table()
        store = Store(
            pool,
            settings.chain_id,
            targets.addresses,
            {s.name: s for s in table.values()},
            outbox_batch=settings.outbox_batch,
        )
        applied = await store.migrate()
        if applied:
            log.info("applied migrations: %s", ", ".join(applied))
        lock_conn = await asyncpg.connect(settings.db_uri)
        await _writer_lock(lock_conn, lock_wait, stop)
        await store.seed_markets(targets.markets.values())
        drainer = OutboxDrainer(
            store.outbox,
            settings.kafka_bootstrap_servers,
            settings.kafka_topic,
            batch=settings.outbox_batch,
            partitions=settings.kafka_partitions,
            poll_interval=settings.poll_interval,
            memory_messages=settings.outbox_memory_messages,
            pairs={mid: info.pair for mid, info in targets.markets.items()},
        )
        fetch_pool = FetchPool(
            FetchConfig(
                rpc_url=settings.rpc_url,
                timeout=settings.rpc_timeout_s,
                contracts=targets.contracts,
                market_filter=targets.market_filter,
            ),
            table,
        )
        indexer = Indexer(
            settings,
            targets,
            rpc,
            store,
            fetch_pool,
            on_commit=drainer.notify,
            outbox_sink=drainer.offer,
        )
        bridge = await _bridge_follower(settings, targets, pool)
        # Everything built so far (modules, ABIs, clients) lives as long as the process: keep
        # it out of the cyclic GC's scans, which the per-chunk garbage triggers often.
        gc.freeze()
        yield IndexerApp(settings, targets, rpc, pool, store, indexer, drainer, lock_conn, bridge)
    finally:
        if bridge is not None:
            await bridge.close()
        if fetch_pool is not None:
            await fetch_pool.close()
        if lock_conn is not None:
            with contextlib.suppress(Exception):
                await lock_conn.close()
        if pool is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(pool.close(), 10)
        await rpc.close()


async def _bridge_follower(
    settings: IndexerSettings, targets: IndexTargets, pool: asyncpg.Pool
) -> BridgeFollower | None:
    """The bridge mode, when the deployment has a bridge and REMOTE_RPC_URL is set."""
    if targets.bridge is None or not settings.remote_rpc_url:
        return None
    home = JsonRpc(settings.rpc_url, settings.rpc_timeout_s, settings.max_retries)
    remote = JsonRpc(settings.remote_rpc_url, settings.rpc_timeout_s, settings.max_retries)
    reported = await remote.chain_id()
    if reported != targets.bridge.remote.chain_id:
        await home.close()
        await remote.close()
        raise ConfigError(
            {
                "REMOTE_RPC_URL": f"node reports chain {reported}, the bridge's remote end is "
                f"{targets.bridge.remote.chain_id}"
            },
            "indexer",
        )
    log.info("following the bridge on chains %d and %d", targets.bridge.home.chain_id, reported)
    return make_follower(
        pool,
        targets.bridge,
        home,
        remote,
        confirmations=settings.confirmations,
        poll_s=settings.poll_interval,
        reorg_window=settings.reorg_window,
    )


class StoppedWaiting(Exception):
    """Told to stop while waiting (standby) for the writer lock."""


async def _writer_lock(
    conn: asyncpg.Connection, wait: float | None, stop: asyncio.Event | None = None
) -> None:
    """One writer per database: hold a session advisory lock; wait (standby) while another
    indexer holds it, until `stop` is set."""
    waited = 0.0
    while not await conn.fetchval("SELECT pg_try_advisory_lock($1)", WRITER_LOCK_KEY):
        if waited == 0.0:
            log.warning("another indexer holds the writer lock; waiting (standby)")
        if wait is not None and waited >= wait:
            raise TimeoutError("writer lock held by another indexer")
        if stop is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
            if stop.is_set():
                raise StoppedWaiting("stopped while waiting for the writer lock (standby)")
        else:
            await asyncio.sleep(1.0)
        waited += 1.0
