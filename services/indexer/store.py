"""PostgreSQL side of the indexer (asyncpg): set-up, the sync state, and chunk writes. The
outbox's reads are `outbox_store.OutboxStore` (`Store.outbox`) and a reorg's undo is
`rollback.ReorgRollback` (`Store.reorg`); they share the pool and the decoding of `events` rows.

One chunk = one transaction: raw events, positions, liquidations, funding updates, markets,
outbox rows, recent block hashes and sync_status all commit together or not at all, so a crash
leaves neither a gap nor a duplicate, and the positions table always matches what was put in the
outbox. The sync_status row is locked and compared with the expected last block first: a second
writer (or a stale one) fails instead of writing twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from services.indexer.decode import DecodedLog
from services.indexer.event_rows import EventRows
from services.indexer.event_specs import EventSpec
from services.indexer.outbox_rows import Message, OutboxRow, outbox_ranges
from services.indexer.outbox_store import OutboxStore
from services.indexer.rollback import ReorgRollback
from services.indexer.rows import FoldResult
from services.indexer.settings import MarketInfo
from services.indexer.table_writes import lock_sync_status, set_sync_status, upsert_positions
from shared.config import ConfigError
from shared.db import apply_migrations
from shared.readmodel.tables import (
    EVENT_COLUMNS,
    FUNDING_COLUMNS,
    LIQUIDATION_COLUMNS,
    MARKET_COLUMNS,
    POSITION_COLUMNS,
    MarketState,
    PositionRow,
)
from shared.telemetry import tracer

log = logging.getLogger(__name__)
_tracer = tracer("perpex.indexer.store")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Only one indexer writes a database at a time; others wait on this lock (hot standby).
WRITER_LOCK_KEY = 0x5045_5250_4958_31  # "PERPIX1"


class ConcurrentWriterError(RuntimeError):
    """sync_status is not where this writer expected it: someone else wrote the range."""


@dataclass(frozen=True)
class SyncState:
    last_block: int | None  # None: nothing indexed yet
    last_hash: str | None


@dataclass
class ChunkWrite:
    from_block: int
    to_block: int
    to_hash: str
    events: list[DecodedLog]
    events_copy: bytes  # the events rows in COPY text format (copy_text.events_copy)
    messages: list[Message]  # (event_id, key, value) in event order
    fold: FoldResult
    block_hashes: dict[int, str]  # blocks to remember for reorg checks
    window_floor: int  # forget hashes of blocks below this
    trace_carrier: dict[str, str] = field(default_factory=dict)


class Store:
    def __init__(
        self,
        pool: asyncpg.Pool,
        chain_id: int,
        contracts: Sequence[str],
        specs_by_name: Mapping[str, EventSpec],
        outbox_batch: int = 2000,
    ):
        self.outbox_batch = outbox_batch
        self.pool = pool
        self.chain_id = chain_id
        self.contracts = [c.lower() for c in contracts]
        self.rows = EventRows(chain_id, specs_by_name)
        self.outbox = OutboxStore(pool, self.rows)
        self.reorg = ReorgRollback(pool, self.rows, self.outbox, self.contracts, outbox_batch)

    # ---------------------------------------------------------------- set-up
    async def migrate(self) -> list[str]:
        async with self.pool.acquire() as conn:
            return await apply_migrations(conn, MIGRATIONS_DIR)

    async def seed_markets(self, markets: Iterable[MarketInfo]) -> None:
        """Markets named by the deployment/config; events fill in and update the rest."""
        rows = [(m.market_id, m.pair, m.vamm, m.oracle_feed) for m in markets]
        if not rows:
            return
        async with self.pool.acquire() as conn:
            await conn.executemany(
                """INSERT INTO markets (market_id, pair, vamm, oracle_feed) VALUES ($1, $2, $3, $4)
                   ON CONFLICT (market_id) DO UPDATE SET
                     pair = COALESCE(markets.pair, EXCLUDED.pair),
                     vamm = COALESCE(markets.vamm, EXCLUDED.vamm),
                     oracle_feed = COALESCE(markets.oracle_feed, EXCLUDED.oracle_feed)""",
                rows,
            )

    async def load_state(self) -> SyncState:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT contract_address, last_synced_block, last_synced_hash FROM sync_status"
            )
        if not rows:
            return SyncState(None, None)
        stored = sorted(r["contract_address"] for r in rows)
        if stored != sorted(self.contracts):
            # Another contract set: its history is not in this database, and resuming would
            # either skip it or index blocks twice. Say so instead of guessing.
            raise ConfigError(
                {
                    "POSITION_MANAGER_ADDRESS/POSITION_NFT_ADDRESS": (
                        f"this database (DB_URI) follows {', '.join(stored)}, not "
                        f"{', '.join(sorted(self.contracts))}: use a fresh database for other "
                        "contracts"
                    )
                },
                "perpex indexer",
            )
        blocks = {r["last_synced_block"] for r in rows}
        if len(blocks) != 1 or len(rows) != len(self.contracts):
            # The contracts always move together; a partial set means the followed set
            # changed. Resume from the least advanced one.
            low = min(rows, key=lambda r: r["last_synced_block"])
            return SyncState(low["last_synced_block"], None)
        row = rows[0]
        return SyncState(row["last_synced_block"], row["last_synced_hash"])

    async def recent_hashes(self) -> list[tuple[int, str]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT block_number, block_hash FROM block_hashes ORDER BY block_number DESC"
            )
        return [(r["block_number"], r["block_hash"]) for r in rows]

    async def load_markets(self) -> dict[str, MarketState]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(f"SELECT {', '.join(MARKET_COLUMNS)} FROM markets")
        return {r["market_id"]: _market_from_record(r) for r in rows}

    async def load_positions(self, token_ids: Iterable[int]) -> dict[int, PositionRow]:
        ids = sorted(set(token_ids))
        if not ids:
            return {}
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                f"SELECT {', '.join(POSITION_COLUMNS)} FROM positions "
                "WHERE token_id = ANY($1::numeric[])",
                ids,
            )
        return {int(r["token_id"]): PositionRow.from_record(r) for r in rows}

    # ---------------------------------------------------------------- chunk write
    async def write_chunk(
        self,
        chunk: ChunkWrite,
        expected_last: int | None,
        on_committed: Callable[[list[OutboxRow]], None] | None = None,
    ) -> list[OutboxRow]:
        """The chunk's transaction. Returns its (committed) outbox rows with their messages,
        and hands them to `on_committed` the moment the commit is acknowledged (before the
        connection goes back to the pool), so the drainer has them before it can see them."""
        with _tracer.start_as_current_span("db write_chunk") as span:
            span.set_attribute("indexer.from_block", chunk.from_block)
            span.set_attribute("indexer.to_block", chunk.to_block)
            span.set_attribute("indexer.events", len(chunk.events))
            async with self.pool.acquire() as conn:
                async with conn.transaction():
                    await self._check_position(conn, expected_last)
                    await self._write_rows(conn, chunk)
                    ids = await self._write_outbox(conn, chunk)
                    await self._write_block_hashes(conn, chunk.block_hashes, chunk.window_floor)
                    await set_sync_status(conn, self.contracts, chunk.to_block, chunk.to_hash)
                headers = [(k, v.encode()) for k, v in chunk.trace_carrier.items()]
                batch = self.outbox_batch
                rows = [
                    OutboxRow(row_id, chunk.messages[i * batch : (i + 1) * batch], headers)
                    for i, row_id in enumerate(ids)
                ]
                if rows and on_committed is not None:
                    on_committed(rows)
        return rows

    async def _check_position(self, conn: asyncpg.Connection, expected_last: int | None) -> None:
        blocks = await lock_sync_status(conn, self.contracts)
        current = set(blocks)
        if expected_last is None:
            if blocks:
                raise ConcurrentWriterError(f"expected no sync_status, found {sorted(current)}")
        elif current != {expected_last} or len(blocks) != len(self.contracts):
            raise ConcurrentWriterError(
                f"expected sync_status at block {expected_last}, found {sorted(current)}"
            )

    async def _write_rows(self, conn: asyncpg.Connection, chunk: ChunkWrite) -> None:
        fold = chunk.fold
        if chunk.events:
            # memoryview: asyncpg would take bytes for a file path
            await conn.copy_to_table(
                "events", source=memoryview(chunk.events_copy), columns=EVENT_COLUMNS, format="text"
            )
        await upsert_positions(conn, fold.positions.values())
        if fold.liquidations:
            await conn.copy_records_to_table(
                "liquidations",
                columns=LIQUIDATION_COLUMNS,
                records=[r.record() for r in fold.liquidations],
            )
        if fold.funding:
            await conn.copy_records_to_table(
                "funding_updates",
                columns=FUNDING_COLUMNS,
                records=[r.record() for r in fold.funding],
            )
        await self._upsert_markets(conn, fold.markets.values())

    async def _write_outbox(self, conn: asyncpg.Connection, chunk: ChunkWrite) -> list[int]:
        """By-reference outbox rows for the chunk's events (one per OUTBOX_BATCH events), in
        chain order; returns their ids in that order."""
        ranges = outbox_ranges(chunk.events, self.outbox_batch)
        if not ranges:
            return []
        headers = json.dumps(chunk.trace_carrier) if chunk.trace_carrier else None
        columns = list(zip(*ranges, strict=True))
        rows = await conn.fetch(
            "INSERT INTO outbox (message_count, first_block, first_log_index, last_block, "
            "last_log_index, headers, reverted) "
            "SELECT c, fb, fl, lb, ll, $6::jsonb, false FROM unnest($1::int[], $2::bigint[], "
            "$3::int[], $4::bigint[], $5::int[]) WITH ORDINALITY AS r(c, fb, fl, lb, ll, n) "
            "ORDER BY n RETURNING id",
            *columns,
            headers,
        )
        # ids come from the sequence in insertion order, which is chain order
        return sorted(r["id"] for r in rows)

    async def _upsert_markets(
        self, conn: asyncpg.Connection, markets: Iterable[MarketState]
    ) -> None:
        records = [m.record() for m in markets]
        if not records:
            return
        cols = ", ".join(MARKET_COLUMNS)
        params = ", ".join(f"${i + 1}" for i in range(len(MARKET_COLUMNS)))
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in MARKET_COLUMNS if c != "market_id")
        await conn.executemany(
            f"INSERT INTO markets ({cols}) VALUES ({params}) "
            f"ON CONFLICT (market_id) DO UPDATE SET {updates}",
            records,
        )

    async def _write_block_hashes(
        self, conn: asyncpg.Connection, hashes: Mapping[int, str], floor: int
    ) -> None:
        if hashes:
            numbers = list(hashes)
            await conn.execute(
                "INSERT INTO block_hashes (block_number, block_hash) "
                "SELECT * FROM unnest($1::bigint[], $2::text[]) "
                "ON CONFLICT (block_number) DO UPDATE SET block_hash = EXCLUDED.block_hash",
                numbers,
                [hashes[n] for n in numbers],
            )
        await conn.execute("DELETE FROM block_hashes WHERE block_number < $1", floor)


def _market_from_record(r: Mapping[str, Any]) -> MarketState:
    return MarketState(
        market_id=r["market_id"],
        pair=r["pair"],
        vamm=r["vamm"],
        oracle_feed=r["oracle_feed"],
        cumulative_funding_index=int(r["cumulative_funding_index"]),
        funding_rate=int(r["funding_rate"]),
        last_funding_time=r["last_funding_time"],
        paused=r["paused"],
        added_block=r["added_block"],
        updated_block=r["updated_block"],
        funding_per_second=int(r["funding_per_second"]),
        cumulative_funding_short=int(r["cumulative_funding_short"]),
    )
