"""Book bootstrap from the indexer's PostgreSQL tables (read-only; shared.readmodel).

`positions` (status = 'open') gives every open position with its current size, collateral and
entry funding index; `updated_block` is the block its state reflects, so older events replayed
from Kafka afterwards are recognised as stale. `markets` gives the pairs. (Funding accrues every
second: the current cumulative index comes from the chain each block, not from here.) The
keeper never writes to this database.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import asyncpg

from services.keeper.book import END_OF_BLOCK, BookPosition
from shared.readmodel.queries import MARKET_PAIRS_SQL, SYNCED_BLOCK_SQL, open_positions_sql

log = logging.getLogger(__name__)

# what the book holds of a position (_position)
BOOK_COLUMNS = (
    "token_id",
    "market_id",
    "owner",
    "is_long",
    "collateral",
    "size",
    "notional",
    "entry_funding_index",
    "updated_block",
)
OPEN_POSITIONS_SQL = open_positions_sql(BOOK_COLUMNS)


class IndexerNotReadyError(RuntimeError):
    """The indexer's tables do not exist yet."""


@dataclass(frozen=True)
class Snapshot:
    positions: list[BookPosition]
    pairs: dict[str, str | None]
    synced_block: int | None


class BookStore:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def snapshot(self, owns: object = None) -> Snapshot:
        """Open positions (those `owns(token_id)` accepts) and markets, in one repeatable-read
        transaction."""
        try:
            async with self.pool.acquire() as conn, conn.transaction(isolation="repeatable_read"):
                synced = await conn.fetchval(SYNCED_BLOCK_SQL)
                rows = await conn.fetch(OPEN_POSITIONS_SQL)
                market_rows = await conn.fetch(MARKET_PAIRS_SQL)
        except asyncpg.UndefinedTableError as exc:
            raise IndexerNotReadyError(f"indexer tables missing: {exc}") from None
        accept = owns if callable(owns) else None
        positions = [_position(r) for r in rows if accept is None or accept(int(r["token_id"]))]
        pairs = {str(r["market_id"]).lower(): r["pair"] for r in market_rows}
        return Snapshot(positions, pairs, int(synced) if synced is not None else None)


def _position(r: asyncpg.Record) -> BookPosition:
    return BookPosition(
        token_id=int(r["token_id"]),
        market_id=str(r["market_id"]).lower(),
        owner=str(r["owner"]).lower(),
        is_long=bool(r["is_long"]),
        collateral=int(r["collateral"]),
        size=int(r["size"]),
        notional=int(r["notional"]),
        entry_funding_index=int(r["entry_funding_index"]),
        updated=(int(r["updated_block"]), END_OF_BLOCK),
    )
