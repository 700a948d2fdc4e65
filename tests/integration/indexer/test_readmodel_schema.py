"""The read model (shared/readmodel) against the schema the indexer's migrations create: each
row class lists its table's columns in table order, the numeric(78,0) ones marked numeric, and
every shared SELECT is valid SQL over it."""

from __future__ import annotations

import asyncpg

from services.indexer.store import MIGRATIONS_DIR
from shared.db import apply_migrations
from shared.readmodel import queries, tables


async def test_the_read_model_is_the_migrated_schema(fresh_db: str) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        await apply_migrations(conn, MIGRATIONS_DIR)

        async def columns(table: str) -> list[tuple[str, str]]:
            rows = await conn.fetch(
                "SELECT column_name, data_type FROM information_schema.columns "
                "WHERE table_name = $1 ORDER BY ordinal_position",
                table,
            )
            return [(r["column_name"], r["data_type"]) for r in rows]

        for table, row in (
            (tables.POSITIONS, tables.PositionRow),
            (tables.LIQUIDATIONS, tables.LiquidationRow),
            (tables.FUNDING_UPDATES, tables.FundingRow),
            (tables.MARKETS, tables.MarketState),
        ):
            schema = await columns(table)
            assert [name for name, _ in schema] == list(tables.columns(row)), table
            numeric = {name for name, kind in schema if kind == "numeric"}
            assert numeric == tables.numeric_columns(row), table
        assert [name for name, _ in await columns(tables.EVENTS)] == list(tables.EVENT_COLUMNS)
        for table in tables.READ_TABLES:
            assert await columns(table), f"{table} is missing"
        for sql in (
            queries.POSITION_SELECT,
            queries.LIQUIDATION_SELECT,
            queries.FUNDING_SELECT,
            queries.POSITION_EVENTS_SQL,
            queries.POSITIONS_EVENTS_SQL,
            queries.SYNC_STATUS_SQL,
            queries.SYNCED_BLOCK_SQL,
            queries.MARKET_PAIRS_SQL,
            queries.open_positions_sql(tables.POSITION_COLUMNS),
        ):
            await conn.prepare(sql)
    finally:
        await conn.close()
