"""Writes to the indexer's tables shared by a chunk's transaction and a reorg rollback."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import asyncpg

from services.indexer.copy_text import positions_copy
from shared.readmodel.tables import POSITION_COLUMNS, PositionRow

_POSITIONS_STAGE_DDL = (
    "CREATE TEMP TABLE IF NOT EXISTS positions_stage (LIKE positions) ON COMMIT DELETE ROWS"
)
_POSITIONS_UPSERT = (
    f"INSERT INTO positions ({', '.join(POSITION_COLUMNS)}) "
    f"SELECT {', '.join(POSITION_COLUMNS)} FROM positions_stage "
    "ON CONFLICT (token_id) DO UPDATE SET "
    + ", ".join(f"{c} = EXCLUDED.{c}" for c in POSITION_COLUMNS if c != "token_id")
)


async def upsert_positions(conn: asyncpg.Connection, rows: Iterable[PositionRow]) -> None:
    """Positions as they stand now (COPY into a staging table, then one upsert)."""
    data = positions_copy(rows)
    if not data:
        return
    await conn.execute(_POSITIONS_STAGE_DDL)
    await conn.copy_to_table(
        "positions_stage", source=memoryview(data), columns=POSITION_COLUMNS, format="text"
    )
    await conn.execute(_POSITIONS_UPSERT)


async def set_sync_status(
    conn: asyncpg.Connection, contracts: Sequence[str], block: int, block_hash: str | None
) -> None:
    """Every followed contract is synced up to `block` (whose hash is `block_hash`)."""
    await conn.execute(
        "INSERT INTO sync_status (contract_address, last_synced_block, last_synced_hash, updated_at) "
        "SELECT c, $2, $3, now() FROM unnest($1::text[]) AS c "
        "ON CONFLICT (contract_address) DO UPDATE SET last_synced_block = EXCLUDED.last_synced_block, "
        "last_synced_hash = EXCLUDED.last_synced_hash, updated_at = now()",
        list(contracts),
        block,
        block_hash,
    )


async def lock_sync_status(conn: asyncpg.Connection, contracts: Sequence[str]) -> list[int]:
    """Lock the followed contracts' sync_status rows (one writer at a time); their blocks."""
    rows = await conn.fetch(
        "SELECT last_synced_block FROM sync_status WHERE contract_address = ANY($1::text[]) "
        "FOR UPDATE",
        list(contracts),
    )
    return [r["last_synced_block"] for r in rows]
