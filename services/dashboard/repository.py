"""Read-only queries over the indexer's tables (shared.readmodel; services/indexer/migrations).

SQL is built from fixed fragments only; every value a caller supplies is a bind parameter. The
`*_sql` functions are pure (they return the text and the arguments) so they can be checked
without a database; `DashboardRepository` runs them on an asyncpg pool.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from services.dashboard.params import FundingFilter, LiquidationFilter, Page, PositionFilter
from shared.readmodel.queries import (
    FUNDING_SELECT,
    LIQUIDATION_SELECT,
    POSITION_EVENTS_SQL,
    POSITION_SELECT,
    SYNC_STATUS_SQL,
)

# Sort keys (validated in params.POSITION_SORTS) -> the sort column. token_id breaks ties.
# `closed` sorts positions still open (closed_block NULL) last in both directions, written
# with a sentinel instead of NULLS LAST so that one row comparison (keyset.py) and an index
# on the expression (migration 0008) serve it.
POSITION_SORT_COLUMN = {
    "opened": "p.opened_block",
    "notional": "p.notional",
    "size": "p.size",
    "collateral": "p.collateral",
}
CLOSED_SENTINEL = {"desc": -1, "asc": 2**63 - 1}  # below / above every block number


def position_sort_column(sort: str, order: str) -> str | None:
    """The leading sort expression of `sort` (None for token_id, which sorts alone)."""
    if sort == "token_id":
        return None
    if sort == "closed":
        return f"COALESCE(p.closed_block, {CLOSED_SENTINEL[order]})"
    return POSITION_SORT_COLUMN[sort]


def position_order_sql(sort: str, order: str) -> str:
    direction = order.upper()
    column = position_sort_column(sort, order)
    if column is None:
        return f"p.token_id {direction}"
    return f"{column} {direction}, p.token_id {direction}"


@dataclass
class Where:
    clauses: list[str]
    args: list[Any]

    def add(self, template: str, *values: Any) -> None:
        """`template` holds one `{}` per bind parameter, in order."""
        marks = []
        for value in values:
            self.args.append(value)
            marks.append(f"${len(self.args)}")
        self.clauses.append(template.format(*marks))

    def sql(self) -> str:
        return ("WHERE " + " AND ".join(self.clauses)) if self.clauses else ""

    def param(self, value: Any) -> str:
        """A bind parameter outside the WHERE clause (LIMIT, OFFSET)."""
        self.args.append(value)
        return f"${len(self.args)}"


def position_where(f: PositionFilter) -> Where:
    where = Where([], [])
    if f.statuses is not None:
        if len(f.statuses) == 1:  # a plain equality lets the planner use an ordered index
            where.add("p.status = {}", f.statuses[0])
        else:
            where.add("p.status = ANY({}::text[])", list(f.statuses))
    if f.market is not None:
        where.add("p.market_id = {}", f.market.market_id)
    if f.owner is not None:
        where.add("p.owner = {}", f.owner)
    if f.opened_from is not None:
        where.add("p.opened_block >= {}", f.opened_from)
    if f.opened_to is not None:
        where.add("p.opened_block <= {}", f.opened_to)
    if f.closed_from is not None:
        where.add("p.closed_block >= {}", f.closed_from)
    if f.closed_to is not None:
        where.add("p.closed_block <= {}", f.closed_to)
    return where


def liquidation_where(f: LiquidationFilter) -> Where:
    where = Where([], [])
    if f.market is not None:
        where.add("l.market_id = {}", f.market.market_id)
    if f.owner is not None:
        where.add("l.owner = {}", f.owner)
    if f.liquidator is not None:
        where.add("l.liquidator = {}", f.liquidator)
    if f.since is not None:
        where.add("l.block_timestamp >= {}", f.since)
    if f.until is not None:
        where.add("l.block_timestamp <= {}", f.until)
    return where


def funding_where(f: FundingFilter) -> Where:
    where = Where([], [])
    if f.market is not None:
        where.add("f.market_id = {}", f.market.market_id)
    if f.since is not None:
        where.add("f.funding_timestamp >= {}", f.since)
    if f.until is not None:
        where.add("f.funding_timestamp <= {}", f.until)
    return where


def _offset_page(select: str, where: Where, order: str, page: Page) -> tuple[str, list[Any]]:
    filters = where.sql()
    limit, offset = where.param(page.limit), where.param(page.offset)
    return f"{select} {filters} ORDER BY {order} LIMIT {limit} OFFSET {offset}", where.args


# Positions per (market, status): the total of any filter on market and status alone, from one
# scan per indexer commit however many such filters are asked for (GraphQL's totalCount).
POSITION_GROUPS_SQL = (
    "SELECT market_id, status, count(*) AS n FROM positions GROUP BY market_id, status"
)


def groups_answer(f: PositionFilter) -> bool:
    """Can f's total come from POSITION_GROUPS_SQL (no owner, no block range)?"""
    blocks = (f.opened_from, f.opened_to, f.closed_from, f.closed_to)
    return f.owner is None and all(b is None for b in blocks)


def total_from_groups(groups: list[Any], f: PositionFilter) -> int:
    """f's total from POSITION_GROUPS_SQL rows (pure; only when groups_answer(f))."""
    return sum(
        int(g["n"])
        for g in groups
        if (f.market is None or g["market_id"] == f.market.market_id)
        and (f.statuses is None or g["status"] in f.statuses)
    )


def positions_sql(f: PositionFilter) -> tuple[str, str, list[Any]]:
    """(page query, count query, args); the page query's last two args are limit and offset."""
    where = position_where(f)
    count = f"SELECT count(*) FROM positions p {where.sql()}"
    order = position_order_sql(f.sort, f.order)
    page, args = _offset_page(POSITION_SELECT, where, order, f.page)
    return page, count, args


def liquidations_sql(f: LiquidationFilter) -> tuple[str, str, list[Any]]:
    where = liquidation_where(f)
    count = f"SELECT count(*) FROM liquidations l {where.sql()}"
    order = "l.block_number DESC, l.log_index DESC"
    page, args = _offset_page(LIQUIDATION_SELECT, where, order, f.page)
    return page, count, args


def funding_sql(f: FundingFilter) -> tuple[str, str, list[Any]]:
    where = funding_where(f)
    count = f"SELECT count(*) FROM funding_updates f {where.sql()}"
    direction = f.order.upper()
    order = f"f.block_number {direction}, f.log_index {direction}"
    page, args = _offset_page(FUNDING_SELECT, where, order, f.page)
    return page, count, args


MARKET_STATS_SQL = """
WITH ids AS (
    SELECT market_id FROM markets
    UNION SELECT market_id FROM positions
    UNION SELECT market_id FROM funding_updates
    UNION SELECT market_id FROM liquidations
), pos AS (
    SELECT market_id,
           max(market) AS pair_hint,
           count(*) FILTER (WHERE status = 'open') AS open_positions,
           count(*) FILTER (WHERE status = 'closed') AS closed_positions,
           count(*) FILTER (WHERE status = 'liquidated') AS liquidated_positions,
           COALESCE(sum(notional) FILTER (WHERE status = 'open' AND is_long), 0)
               AS open_interest_long,
           COALESCE(sum(notional) FILTER (WHERE status = 'open' AND NOT is_long), 0)
               AS open_interest_short,
           COALESCE(sum(size) FILTER (WHERE status = 'open' AND is_long), 0) AS open_size_long,
           COALESCE(sum(size) FILTER (WHERE status = 'open' AND NOT is_long), 0)
               AS open_size_short,
           COALESCE(sum(collateral) FILTER (WHERE status = 'open'), 0) AS open_collateral
    FROM positions GROUP BY market_id
), liq AS (
    SELECT market_id, count(*) AS liquidations, sum(reward) AS liquidation_rewards,
           sum(bad_debt) AS bad_debt, max(block_timestamp) AS last_liquidation_timestamp
    FROM liquidations GROUP BY market_id
), last_funding AS (
    SELECT DISTINCT ON (market_id) market_id, funding_rate, cumulative_funding_index,
           cumulative_funding_short, funding_per_second, funding_timestamp
    FROM funding_updates ORDER BY market_id, block_number DESC, log_index DESC
)
SELECT ids.market_id,
       COALESCE(m.pair, pos.pair_hint) AS pair,
       COALESCE(m.paused, false) AS paused,
       COALESCE(pos.open_positions, 0) AS open_positions,
       COALESCE(pos.closed_positions, 0) AS closed_positions,
       COALESCE(pos.liquidated_positions, 0) AS liquidated_positions,
       COALESCE(pos.open_interest_long, 0) AS open_interest_long,
       COALESCE(pos.open_interest_short, 0) AS open_interest_short,
       COALESCE(pos.open_size_long, 0) AS open_size_long,
       COALESCE(pos.open_size_short, 0) AS open_size_short,
       COALESCE(pos.open_collateral, 0) AS open_collateral,
       COALESCE(liq.liquidations, 0) AS liquidations,
       COALESCE(liq.liquidation_rewards, 0) AS liquidation_rewards,
       COALESCE(liq.bad_debt, 0) AS bad_debt,
       liq.last_liquidation_timestamp,
       CASE WHEN lf.market_id IS NOT NULL THEN lf.funding_rate
            WHEN m.last_funding_time IS NOT NULL THEN m.funding_rate END AS funding_rate,
       CASE WHEN lf.market_id IS NOT NULL THEN lf.cumulative_funding_index
            WHEN m.last_funding_time IS NOT NULL THEN m.cumulative_funding_index
       END AS cumulative_funding_index,
       CASE WHEN lf.market_id IS NOT NULL THEN lf.cumulative_funding_short
            WHEN m.last_funding_time IS NOT NULL THEN m.cumulative_funding_short
       END AS cumulative_funding_short,
       CASE WHEN lf.market_id IS NOT NULL THEN lf.funding_per_second
            WHEN m.last_funding_time IS NOT NULL THEN m.funding_per_second
       END AS funding_per_second,
       COALESCE(lf.funding_timestamp, m.last_funding_time) AS last_funding_time
FROM ids
LEFT JOIN markets m ON m.market_id = ids.market_id
LEFT JOIN pos ON pos.market_id = ids.market_id
LEFT JOIN liq ON liq.market_id = ids.market_id
LEFT JOIN last_funding lf ON lf.market_id = ids.market_id
ORDER BY pair NULLS LAST, ids.market_id
"""


class DashboardRepository:
    def __init__(self, pool: asyncpg.Pool):
        self.pool = pool

    async def ping(self) -> None:
        async with self.pool.acquire() as conn:
            await conn.fetchval("SELECT 1")

    async def _page(self, page_sql: str, count_sql: str, args: list[Any]) -> tuple[list[Any], int]:
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            # One snapshot for both (repeatable read: under read committed each statement
            # takes its own), so the total matches the page while the indexer writes.
            rows = await conn.fetch(page_sql, *args)
            total = await conn.fetchval(count_sql, *args[:-2])
        return list(rows), int(total)

    async def positions(self, f: PositionFilter) -> tuple[list[Any], int]:
        return await self._page(*positions_sql(f))

    async def position(self, token_id: int) -> asyncpg.Record | None:
        async with self.pool.acquire() as conn:
            return await conn.fetchrow(f"{POSITION_SELECT} WHERE p.token_id = $1", token_id)

    async def position_events(self, token_id: int) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(POSITION_EVENTS_SQL, token_id))

    async def liquidations(self, f: LiquidationFilter) -> tuple[list[Any], int]:
        return await self._page(*liquidations_sql(f))

    async def funding(self, f: FundingFilter) -> tuple[list[Any], int]:
        return await self._page(*funding_sql(f))

    async def market_stats(self) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(MARKET_STATS_SQL))

    async def sync_status(self) -> list[asyncpg.Record]:
        async with self.pool.acquire() as conn:
            return list(await conn.fetch(SYNC_STATUS_SQL))
