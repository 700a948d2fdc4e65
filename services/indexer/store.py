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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from services.indexer.copy_text import positions_copy
from services.indexer.decode import DecodedLog, EventSpec, trace_json
from services.indexer.rows import Fold, FoldResult
from services.indexer.settings import MarketInfo
from shared.config import ConfigError
from shared.db import apply_migrations
from shared.events.schema import encode_event
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

OUTBOX_COLUMNS = (
    "event_ids",
    "msg_keys",
    "msg_values",
    "headers",
    "reverted",
    "first_block",
    "last_block",
    "message_count",
)


_POSITIONS_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS positions_stage (LIKE positions) ON COMMIT DELETE ROWS"
)
_POSITIONS_UPSERT = (
    f"INSERT INTO positions ({', '.join(POSITION_COLUMNS)}) "
    f"SELECT {', '.join(POSITION_COLUMNS)} FROM positions_stage "
    "ON CONFLICT (token_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in POSITION_COLUMNS if c != "token_id")
)


_OUTBOX_META = (
    "id, message_count, headers, msg_values IS NOT NULL AS inline, first_block, "
    "first_log_index, last_block, last_log_index"
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
    events_copy: bytes  # the events rows in COPY text format (copy_text.events_copy)
    messages: list[Message]  # (event_id, key, value) in event order
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


Message = tuple[str, bytes, bytes]  # (event_id, Kafka key, Kafka value)


@dataclass(frozen=True)
class OutboxRow:
    id: int
    messages: Sequence[Message]
    headers: list[tuple[str, bytes]]


class OutboxInconsistent(RuntimeError):
    """A by-reference outbox row does not match the events it points at."""


def outbox_records(
    messages: Sequence[Message],
    blocks: Sequence[int],
    headers: str | None,
    reverted: bool,
    batch: int,
) -> list[tuple[Any, ...]]:
    """Inline outbox rows (values carried in the row) of at most `batch` messages each."""
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
                len(part),
            )
        )
    return records


def outbox_ranges(events: Sequence[DecodedLog], batch: int) -> list[tuple[int, int, int, int, int]]:
    """By-reference outbox rows for a chunk's events (in chain order): per `batch` events,
    (message count, first block, first log index, last block, last log index)."""
    out = []
    for i in range(0, len(events), batch):
        first, last = events[i], events[min(i + batch, len(events)) - 1]
        count = min(batch, len(events) - i)
        out.append((count, first.block_number, first.log_index, last.block_number, last.log_index))
    return out


def headers_of(raw: str | None) -> list[tuple[str, bytes]]:
    """Kafka headers from an outbox row's `headers` (the trace carrier as JSON)."""
    if raw is None:
        return []
    return [(k, str(v).encode()) for k, v in sorted(json.loads(raw).items())]


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
        self.rebuilt_rows = 0  # by-reference outbox rows rebuilt from `events` (not in memory)
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
                    await self._set_status(conn, chunk.to_block, chunk.to_hash)
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
            # memoryview: asyncpg would take bytes for a file path
            await conn.copy_to_table(
                "events", source=memoryview(chunk.events_copy), columns=EVENT_COLUMNS, format="text"
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

    async def _upsert_positions(
        self, conn: asyncpg.Connection, rows: Iterable[PositionRow]
    ) -> None:
        data = positions_copy(rows)
        if not data:
            return
        await conn.execute(_POSITIONS_STAGE_DDL)
        await conn.copy_to_table(
            "positions_stage", source=memoryview(data), columns=POSITION_COLUMNS, format="text"
        )
        await conn.execute(_POSITIONS_UPSERT)

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
                market_pairs = await self._pairs(conn, pairs)
                # Unsent rows that point at events about to go: carry their values inline
                # first (the originals must still be published, before their reverts).
                await self._inline_rows_from(conn, first_removed_block, market_pairs)
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
        fold = Fold(pairs=pairs)
        result = fold.apply_all(events)
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
              funding_per_second = COALESCE(f.funding_per_second, 0),
              cumulative_funding_short = COALESCE(f.cumulative_funding_short, 0),
              last_funding_time = COALESCE(f.funding_timestamp, a.block_timestamp),
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
            LEFT JOIN LATERAL (  -- addMarket starts the first window
              SELECT block_timestamp FROM events e
              WHERE e.market_id = ids.market_id AND e.name = 'MarketAdded'
              ORDER BY block_number DESC, log_index DESC LIMIT 1) a ON true
            WHERE m.market_id = ids.market_id
            """,
            markets,
        )

    async def _pairs(self, conn: asyncpg.Connection, known: Mapping[str, str]) -> dict[str, str]:
        pairs = dict(known)
        for r in await conn.fetch("SELECT market_id, pair FROM markets WHERE pair IS NOT NULL"):
            pairs.setdefault(r["market_id"], r["pair"])
        return pairs

    async def _inline_rows_from(
        self, conn: asyncpg.Connection, block: int, pairs: Mapping[str, str]
    ) -> None:
        refs = await conn.fetch(
            f"SELECT {_OUTBOX_META} FROM outbox WHERE sent_at IS NULL AND msg_values IS NULL "
            "AND last_block >= $1 ORDER BY id",
            block,
        )
        for ref in refs:
            messages = await self._rebuild(conn, ref, pairs)
            await conn.execute(
                "UPDATE outbox SET event_ids = $2, msg_keys = $3, msg_values = $4 WHERE id = $1",
                ref["id"],
                [m[0] for m in messages],
                [m[1] for m in messages],
                [m[2] for m in messages],
            )

    async def _rebuild(
        self, conn: asyncpg.Connection, ref: Mapping[str, Any], pairs: Mapping[str, str]
    ) -> list[Message]:
        """The messages of a by-reference outbox row, from its events rows: the encoder the
        indexer used, so the bytes are the ones it would have sent."""
        rows = await conn.fetch(
            f"SELECT {', '.join(EVENT_COLUMNS)} FROM events WHERE chain_id = $1 "
            "AND (block_number, log_index) >= ($2, $3) AND (block_number, log_index) <= ($4, $5) "
            "ORDER BY block_number, log_index",
            self.chain_id,
            ref["first_block"],
            ref["first_log_index"],
            ref["last_block"],
            ref["last_log_index"],
        )
        if len(rows) != ref["message_count"]:
            raise OutboxInconsistent(
                f"outbox row {ref['id']} names {ref['message_count']} events in blocks "
                f"{ref['first_block']}-{ref['last_block']}, the events table has {len(rows)}"
            )
        raw = ref["headers"]
        trace = trace_json(json.loads(raw)) if raw is not None else None
        chain_id = self.chain_id
        out = []
        for r in rows:
            ev = self.decoded_from_row(r)
            pair = pairs.get(ev.market_id) if ev.market_id else None
            out.append((ev.event_id(chain_id), ev.key(chain_id), ev.encode(chain_id, pair, trace)))
        return out

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
            if set(args) == set(spec.order):  # jsonb keeps its own key order: back to the ABI's
                args = {n: args[n] for n in spec.order}
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
    async def fetch_unsent(
        self,
        limit: int,
        pairs: Mapping[str, str] | None = None,
        cached: Mapping[int, OutboxRow] | None = None,
        may_rebuild: Callable[[int], bool] | None = None,
    ) -> list[OutboxRow]:
        """The oldest unsent outbox rows, about `limit` messages in all (at least one row), in
        id order. Rows found in `cached` (handed over in memory after their commit) are taken
        from there; the others are read (inline values) or rebuilt from `events`, all in one
        snapshot so a concurrent rollback cannot tear a row. A by-reference row that is not
        cached and that `may_rebuild` refuses (its hand-over is still on its way) ends the
        list there."""
        # not `cached or {}`: an empty dict is the live one the drainer fills during the awaits
        cached = {} if cached is None else cached
        out: list[OutboxRow] = []
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            metas = await conn.fetch(
                f"SELECT {_OUTBOX_META} FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1",
                max(1, min(limit, 1000)),  # a row holds at least one message
            )
            total = 0
            chosen: list[asyncpg.Record] = []
            for m in metas:
                if chosen and total + m["message_count"] > limit:
                    break
                if (
                    m["id"] not in cached
                    and not m["inline"]
                    and may_rebuild is not None
                    and not may_rebuild(m["id"])
                ):
                    break
                chosen.append(m)
                total += m["message_count"]
            inline_ids = [m["id"] for m in chosen if m["inline"] and m["id"] not in cached]
            inline = {}
            if inline_ids:
                for r in await conn.fetch(
                    "SELECT id, event_ids, msg_keys, msg_values FROM outbox WHERE id = ANY($1)",
                    inline_ids,
                ):
                    inline[r["id"]] = list(
                        zip(r["event_ids"], r["msg_keys"], r["msg_values"], strict=True)
                    )
            market_pairs: dict[str, str] | None = None
            for m in chosen:
                row = cached.get(m["id"])
                if row is None:
                    messages = inline.get(m["id"])
                    if messages is None:
                        if market_pairs is None:
                            market_pairs = await self._pairs(conn, pairs or {})
                        messages = await self._rebuild(conn, m, market_pairs)
                        self.rebuilt_rows += 1
                    row = OutboxRow(m["id"], messages, headers_of(m["headers"]))
                out.append(row)
        return out

    async def mark_sent(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", list(ids)
            )

    async def last_outbox_id(self) -> int:
        async with self.pool.acquire() as conn:
            value = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
        return int(value)

    async def outbox_pending(self) -> int:
        """Messages not yet acknowledged by the broker."""
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT coalesce(sum(message_count), 0) FROM outbox WHERE sent_at IS NULL"
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
        funding_per_second=int(r["funding_per_second"]),
        cumulative_funding_short=int(r["cumulative_funding_short"]),
    )
