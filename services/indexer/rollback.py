"""Reorg rollback in PostgreSQL: every row from the first removed block on is undone in one
transaction, and a compensating (reverted) event is queued in the outbox for each removed
event, newest first. Positions and markets touched are rebuilt from the events that remain."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import asyncpg

from services.indexer.event_rows import EVENT_SELECT, EventRows, market_pairs
from services.indexer.outbox_rows import OUTBOX_COLUMNS, outbox_records
from services.indexer.outbox_store import OutboxStore
from services.indexer.rows import Fold
from services.indexer.settings import MarketInfo
from services.indexer.table_writes import lock_sync_status, set_sync_status, upsert_positions
from shared.events.schema import encode_event
from shared.telemetry import tracer

_tracer = tracer("perpex.indexer.store")

_MARKETS_FROM_EVENTS = """
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
"""


@dataclass
class RollbackResult:
    removed: int
    first_removed_block: int
    tokens: list[int]
    markets: list[str]


class ReorgRollback:
    def __init__(
        self,
        pool: asyncpg.Pool,
        rows: EventRows,
        outbox: OutboxStore,
        contracts: Sequence[str],
        outbox_batch: int,
    ):
        self.pool = pool
        self.rows = rows
        self.outbox = outbox
        self.contracts = list(contracts)
        self.outbox_batch = outbox_batch

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
                await lock_sync_status(conn, self.contracts)
                removed = await conn.fetch(
                    f"{EVENT_SELECT} WHERE block_number >= $1 "
                    "ORDER BY block_number DESC, log_index DESC",
                    first_removed_block,
                )
                known = await market_pairs(conn, pairs)
                # Unsent rows that point at events about to go: carry their values inline
                # first (the originals must still be published, before their reverts).
                await self.outbox.inline_from(conn, first_removed_block, known)
                messages = []
                for r in removed:
                    env = self.rows.envelope(r, known, trace_carrier, reverted=True)
                    messages.append((env.event_id, env.key, encode_event(env)))
                headers = json.dumps(trace_carrier) if trace_carrier else None
                blocks = [r["block_number"] for r in removed]
                outbox = outbox_records(messages, blocks, headers, True, self.outbox_batch)
                tokens = sorted({int(r["token_id"]) for r in removed if r["token_id"] is not None})
                markets = sorted({r["market_id"] for r in removed if r["market_id"] is not None})
                for table in ("events", "liquidations", "funding_updates"):
                    await conn.execute(
                        f"DELETE FROM {table} WHERE block_number >= $1", first_removed_block
                    )
                await self._rebuild_positions(conn, tokens, known)
                await self._rebuild_markets(conn, markets, first_removed_block, configured)
                await conn.execute(
                    "DELETE FROM block_hashes WHERE block_number >= $1", first_removed_block
                )
                await set_sync_status(conn, self.contracts, first_removed_block - 1, ancestor_hash)
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
            f"{EVENT_SELECT} WHERE token_id = ANY($1::numeric[]) ORDER BY block_number, log_index",
            tokens,
        )
        fold = Fold(pairs=pairs)
        result = fold.apply_all([self.rows.decoded(r) for r in rows])
        await upsert_positions(conn, result.positions.values())

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
        if markets:
            await conn.execute(_MARKETS_FROM_EVENTS, markets)
