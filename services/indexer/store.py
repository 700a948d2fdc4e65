"""PostgreSQL side of the indexer (asyncpg).

One chunk = one transaction: raw events, positions, liquidations, funding updates, markets,
outbox rows, recent block hashes and sync_status all commit together or not at all, so a crash
leaves neither a gap nor a duplicate, and the positions table always matches what was put in the
outbox. The sync_status row is locked and compared with the expected last block first: a second
writer (or a stale one) fails instead of writing twice.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from services.indexer.decode import DecodedLog, EventSpec
from services.indexer.rows import (
    FUNDING_COLUMNS,
    LIQUIDATION_COLUMNS,
    MARKET_COLUMNS,
    NUMERIC_POSITION_COLUMNS,
    POSITION_COLUMNS,
    Fold,
    FoldResult,
    MarketState,
    PositionRow,
)
from services.indexer.settings import MarketInfo
from shared.db import apply_migrations
from shared.events.schema import encode_event
from shared.telemetry import tracer

log = logging.getLogger(__name__)
_tracer = tracer("perpex.indexer.store")

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Only one indexer writes a database at a time; others wait on this lock (hot standby).
WRITER_LOCK_KEY = 0x5045_5250_4958_31  # "PERPIX1"

EVENT_COLUMNS = (
    "chain_id",
    "tx_hash",
    "log_index",
    "block_number",
    "block_hash",
    "block_timestamp",
    "contract",
    "name",
    "token_id",
    "market_id",
    "args",
    "funding_index_at",
)
OUTBOX_COLUMNS = (
    "event_ids",
    "msg_keys",
    "msg_values",
    "headers",
    "reverted",
    "first_block",
    "last_block",
)


def _stage_type(column: str) -> str:
    if column in NUMERIC_POSITION_COLUMNS:
        return "text"
    if column == "is_long":
        return "boolean"
    if column.endswith("_block") or column.endswith("_timestamp"):
        return "bigint"
    return "text"


_POSITIONS_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS positions_stage_txt ("
    + ", ".join(f"{c} {_stage_type(c)}" for c in POSITION_COLUMNS)
    + ") ON COMMIT DELETE ROWS"
)


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
    args_json: list[str]  # per event: its args as JSON (integers as decimal strings)
    messages: list[tuple[str, bytes, bytes]]  # (event_id, key, value) in event order
    fold: FoldResult
    block_hashes: dict[int, str]  # blocks to remember for reorg checks
    window_floor: int  # forget hashes of blocks below this
    trace_carrier: dict[str, str] = field(default_factory=dict)


@dataclass
class RollbackResult:
    removed: int
    first_removed_block: int
    tokens: list[int]
    markets: list[str]


@dataclass(frozen=True)
class OutboxRow:
    id: int
    event_ids: list[str]
    keys: list[bytes]
    values: list[bytes]
    headers: list[tuple[str, bytes]]


def outbox_records(
    messages: Sequence[tuple[str, bytes, bytes]],
    blocks: Sequence[int],
    headers: str | None,
    reverted: bool,
    batch: int,
) -> list[tuple[Any, ...]]:
    """Outbox rows of at most `batch` messages each, in order."""
    records = []
    for i in range(0, len(messages), batch):
        part = messages[i : i + batch]
        part_blocks = blocks[i : i + batch]
        records.append(
            (
                [m[0] for m in part],
                [m[1] for m in part],
                [m[2] for m in part],
                headers,
                reverted,
                min(part_blocks),
                max(part_blocks),
            )
        )
    return records


def _num(value: Any) -> int | None:
    return None if value is None else int(value)


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
        self.specs_by_name = dict(specs_by_name)

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
                "SELECT last_synced_block, last_synced_hash FROM sync_status "
                "WHERE contract_address = ANY($1::text[])",
                self.contracts,
            )
        if not rows:
            return SyncState(None, None)
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
    async def write_chunk(self, chunk: ChunkWrite, expected_last: int | None) -> None:
        with _tracer.start_as_current_span("db write_chunk") as span:
            span.set_attribute("indexer.from_block", chunk.from_block)
            span.set_attribute("indexer.to_block", chunk.to_block)
            span.set_attribute("indexer.events", len(chunk.events))
            async with self.pool.acquire() as conn, conn.transaction():
                await self._check_position(conn, expected_last)
                await self._write_rows(conn, chunk)
                await self._write_block_hashes(conn, chunk.block_hashes, chunk.window_floor)
                await self._set_status(conn, chunk.to_block, chunk.to_hash)

    async def _check_position(self, conn: asyncpg.Connection, expected_last: int | None) -> None:
        rows = await conn.fetch(
            "SELECT last_synced_block FROM sync_status WHERE contract_address = ANY($1::text[]) "
            "FOR UPDATE",
            self.contracts,
        )
        current = {r["last_synced_block"] for r in rows}
        if expected_last is None:
            if rows:
                raise ConcurrentWriterError(f"expected no sync_status, found {sorted(current)}")
        elif current != {expected_last} or len(rows) != len(self.contracts):
            raise ConcurrentWriterError(
                f"expected sync_status at block {expected_last}, found {sorted(current)}"
            )

    async def _write_rows(self, conn: asyncpg.Connection, chunk: ChunkWrite) -> None:
        fold = chunk.fold
        if chunk.events:
            chain_id = self.chain_id
            fidx = fold.funding_index_at
            await conn.copy_records_to_table(
                "events",
                columns=EVENT_COLUMNS,
                records=[
                    (
                        chain_id,
                        e.tx_hash,
                        e.log_index,
                        e.block_number,
                        e.block_hash,
                        e.block_timestamp,
                        e.contract,
                        e.name,
                        e.token_id,
                        e.market_id,
                        args,
                        fidx.get((e.block_number, e.log_index)),
                    )
                    for e, args in zip(chunk.events, chunk.args_json, strict=True)
                ],
            )
        await self._upsert_positions(conn, fold.positions.values())
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
        if chunk.messages:
            headers = json.dumps(chunk.trace_carrier) if chunk.trace_carrier else None
            await conn.copy_records_to_table(
                "outbox",
                columns=OUTBOX_COLUMNS,
                records=outbox_records(
                    chunk.messages,
                    [e.block_number for e in chunk.events],
                    headers,
                    False,
                    self.outbox_batch,
                ),
            )

    async def _upsert_positions(
        self, conn: asyncpg.Connection, rows: Iterable[PositionRow]
    ) -> None:
        # Numerics go through a text staging table and are cast by the server: asyncpg's
        # binary numeric encoding of a Python int costs more than everything else per row.
        records = [
            tuple(
                str(v) if (v is not None and c in NUMERIC_POSITION_COLUMNS) else v
                for c, v in zip(POSITION_COLUMNS, r.record(), strict=True)
            )
            for r in rows
        ]
        if not records:
            return
        await conn.execute(_POSITIONS_STAGE_DDL)
        await conn.copy_records_to_table(
            "positions_stage_txt", columns=POSITION_COLUMNS, records=records
        )
        updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in POSITION_COLUMNS if c != "token_id")
        cols = ", ".join(POSITION_COLUMNS)
        casts = ", ".join(
            f"{c}::numeric" if c in NUMERIC_POSITION_COLUMNS else c for c in POSITION_COLUMNS
        )
        await conn.execute(
            f"INSERT INTO positions ({cols}) SELECT {casts} FROM positions_stage_txt "
            f"ON CONFLICT (token_id) DO UPDATE SET {updates}"
        )

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

    async def _set_status(
        self, conn: asyncpg.Connection, block: int, block_hash: str | None
    ) -> None:
        await conn.execute(
            "INSERT INTO sync_status (contract_address, last_synced_block, last_synced_hash, updated_at) "
            "SELECT c, $2, $3, now() FROM unnest($1::text[]) AS c "
            "ON CONFLICT (contract_address) DO UPDATE SET last_synced_block = EXCLUDED.last_synced_block, "
            "last_synced_hash = EXCLUDED.last_synced_hash, updated_at = now()",
            self.contracts,
            block,
            block_hash,
        )

    # ---------------------------------------------------------------- reorg rollback
    async def rollback(
        self,
        first_removed_block: int,
        ancestor_hash: str | None,
        pairs: Mapping[str, str],
        configured: Iterable[MarketInfo],
        trace_carrier: dict[str, str] | None = None,
    ) -> RollbackResult:
        """Undo every row from `first_removed_block` on and queue a compensating (reverted)
        event for each removed event, newest first. One transaction."""
        with _tracer.start_as_current_span("db rollback") as span:
            span.set_attribute("indexer.first_removed_block", first_removed_block)
            async with self.pool.acquire() as conn, conn.transaction():
                await conn.fetch(
                    "SELECT 1 FROM sync_status WHERE contract_address = ANY($1::text[]) FOR UPDATE",
                    self.contracts,
                )
                removed = await conn.fetch(
                    f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE block_number >= $1 "
                    "ORDER BY block_number DESC, log_index DESC",
                    first_removed_block,
                )
                market_pairs = dict(pairs)
                for r in await conn.fetch("SELECT market_id, pair FROM markets"):
                    if r["pair"]:
                        market_pairs.setdefault(r["market_id"], r["pair"])
                headers = json.dumps(trace_carrier) if trace_carrier else None
                messages = []
                for r in removed:
                    env = self.envelope_from_row(r, market_pairs, trace_carrier, reverted=True)
                    messages.append((env.event_id, env.key, encode_event(env)))
                outbox = outbox_records(
                    messages, [r["block_number"] for r in removed], headers, True, self.outbox_batch
                )
                tokens = sorted({int(r["token_id"]) for r in removed if r["token_id"] is not None})
                markets = sorted({r["market_id"] for r in removed if r["market_id"] is not None})
                for table in ("events", "liquidations", "funding_updates"):
                    await conn.execute(
                        f"DELETE FROM {table} WHERE block_number >= $1", first_removed_block
                    )
                await self._rebuild_positions(conn, tokens, market_pairs)
                await self._rebuild_markets(conn, markets, first_removed_block, configured)
                await conn.execute(
                    "DELETE FROM block_hashes WHERE block_number >= $1", first_removed_block
                )
                await self._set_status(conn, first_removed_block - 1, ancestor_hash)
                if outbox:
                    await conn.copy_records_to_table(
                        "outbox", columns=OUTBOX_COLUMNS, records=outbox
                    )
        return RollbackResult(len(removed), first_removed_block, tokens, markets)

    async def _rebuild_positions(
        self, conn: asyncpg.Connection, tokens: list[int], pairs: Mapping[str, str]
    ) -> None:
        if not tokens:
            return
        await conn.execute("DELETE FROM positions WHERE token_id = ANY($1::numeric[])", tokens)
        rows = await conn.fetch(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE token_id = ANY($1::numeric[]) "
            "ORDER BY block_number, log_index",
            tokens,
        )
        events = [self.decoded_from_row(r) for r in rows]
        funding_at = {
            (r["block_number"], r["log_index"]): int(r["funding_index_at"])
            for r in rows
            if r["funding_index_at"] is not None
        }
        fold = Fold(pairs=pairs)
        result = fold.apply_all(events, funding_at)
        await self._upsert_positions(conn, result.positions.values())

    async def _rebuild_markets(
        self,
        conn: asyncpg.Connection,
        markets: list[str],
        first_removed_block: int,
        configured: Iterable[MarketInfo],
    ) -> None:
        await conn.execute("DELETE FROM markets WHERE added_block >= $1", first_removed_block)
        for m in configured:
            await conn.execute(
                "INSERT INTO markets (market_id, pair, vamm, oracle_feed) VALUES ($1, $2, $3, $4) "
                "ON CONFLICT (market_id) DO NOTHING",
                m.market_id,
                m.pair,
                m.vamm,
                m.oracle_feed,
            )
        if not markets:
            return
        await conn.execute(
            """
            UPDATE markets m SET
              cumulative_funding_index = COALESCE(f.cumulative_funding_index, 0),
              funding_rate = COALESCE(f.funding_rate, 0),
              last_funding_time = f.funding_timestamp,
              paused = COALESCE((p.args->>'paused')::boolean, false),
              updated_block = GREATEST(m.added_block, f.block_number, p.block_number)
            FROM unnest($1::text[]) AS ids(market_id)
            LEFT JOIN LATERAL (
              SELECT * FROM funding_updates fu WHERE fu.market_id = ids.market_id
              ORDER BY block_number DESC, log_index DESC LIMIT 1) f ON true
            LEFT JOIN LATERAL (
              SELECT args, block_number FROM events e
              WHERE e.market_id = ids.market_id AND e.name = 'MarketPaused'
              ORDER BY block_number DESC, log_index DESC LIMIT 1) p ON true
            WHERE m.market_id = ids.market_id
            """,
            markets,
        )

    # ---------------------------------------------------------------- row <-> event
    def decoded_from_row(self, r: Mapping[str, Any]) -> DecodedLog:
        args: dict[str, Any] = json.loads(r["args"]) if isinstance(r["args"], str) else r["args"]
        spec = self.specs_by_name.get(r["name"])
        if spec is not None:
            types = dict((*spec.indexed, *spec.data))
            for k, v in list(args.items()):
                t = types.get(k, "")
                if (t.startswith("uint") or t.startswith("int")) and isinstance(v, str):
                    args[k] = int(v)
        return DecodedLog(
            name=r["name"],
            contract=r["contract"],
            block_number=r["block_number"],
            block_hash=r["block_hash"],
            block_timestamp=r["block_timestamp"],
            tx_hash=r["tx_hash"],
            log_index=r["log_index"],
            args=args,
            token_id=_num(r["token_id"]),
            market_id=r["market_id"],
        )

    def envelope_from_row(
        self,
        r: Mapping[str, Any],
        pairs: Mapping[str, str],
        trace: dict[str, str] | None,
        reverted: bool,
    ) -> Any:
        ev = self.decoded_from_row(r)
        market = pairs.get(ev.market_id) if ev.market_id else None
        return ev.envelope(self.chain_id, market, trace or None, reverted=reverted)

    # ---------------------------------------------------------------- outbox
    async def fetch_unsent(self, limit: int) -> list[OutboxRow]:
        """The oldest unsent outbox rows, up to about `limit` messages in all."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT id, event_ids, msg_keys, msg_values, headers FROM outbox "
                "WHERE sent_at IS NULL ORDER BY id LIMIT $1",
                max(1, limit // self.outbox_batch),
            )
        out = []
        for r in rows:
            raw = r["headers"]
            headers = (
                [] if raw is None else [(k, str(v).encode()) for k, v in json.loads(raw).items()]
            )
            out.append(OutboxRow(r["id"], r["event_ids"], r["msg_keys"], r["msg_values"], headers))
        return out

    async def mark_sent(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", list(ids)
            )

    async def outbox_pending(self) -> int:
        """Messages not yet acknowledged by the broker."""
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT coalesce(sum(cardinality(event_ids)), 0) FROM outbox WHERE sent_at IS NULL"
            )
        return int(value)

    async def purge_sent(self, older_than_s: float) -> int:
        async with self.pool.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM outbox WHERE sent_at IS NOT NULL "
                "AND sent_at < now() - make_interval(secs => $1)",
                older_than_s,
            )
        return int(status.split()[-1])


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
    )
