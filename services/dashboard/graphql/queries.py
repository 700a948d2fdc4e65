"""The Query root: arguments -> the REST API's filters (params.py) -> SQL (repository.py,
keyset.py) in the operation's snapshot -> the REST API's formatting (formatting.py)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import strawberry

from services.dashboard import params
from services.dashboard.formatting import FUNDING, LIQUIDATION, MARKET, POSITION, Shape
from services.dashboard.graphql.context import OperationContext, bad_input, from_param_error
from services.dashboard.graphql.limits import CONNECTIONS, page_size_error
from services.dashboard.graphql.rows import Row
from services.dashboard.graphql.scalars import BigInt
from services.dashboard.graphql.sync import sync_status
from services.dashboard.graphql.types import (
    Connection,
    Direction,
    FundingFilter,
    FundingUpdate,
    Liquidation,
    LiquidationFilter,
    Market,
    PageInfo,
    Position,
    PositionFilter,
    PositionOrderBy,
    SyncStatus,
)
from services.dashboard.keyset import (
    Cursor,
    CursorError,
    event_cursor,
    event_ordering,
    funding_page_sql,
    liquidations_page_sql,
    position_cursor,
    position_ordering,
    positions_page_sql,
)
from services.dashboard.repository import MARKET_STATS_SQL
from shared.readmodel.queries import POSITION_SELECT


def _ctx(info: strawberry.Info) -> OperationContext:
    return info.context  # type: ignore[no-any-return]


def _page_size(field: str, first: int) -> int:
    problem = page_size_error(field, first)
    if problem:
        raise bad_input("first", problem)
    return first


def _cursor(after: str | None, ordering: str, size: int) -> Cursor | None:
    if after is None:
        return None
    try:
        return Cursor.decode(after, ordering, size)
    except CursorError as exc:
        raise bad_input("after", str(exc)) from None


def _block(name: str, value: int | None) -> int | None:
    if value is not None and not 0 <= value <= params.MAX_BLOCK:
        raise bad_input(name, f"must be a block number between 0 and {params.MAX_BLOCK}")
    return value


def _range(low_name: str, low: int | None, high_name: str, high: int | None) -> None:
    if low is not None and high is not None and low > high:
        raise bad_input(low_name, f"must not be later than {high_name}")


def position_filter(
    f: PositionFilter | None, order_by: PositionOrderBy, direction: Direction
) -> params.PositionFilter:
    f = f or PositionFilter()
    try:
        market = params.parse_market(f.market)
        owner = params.parse_address("owner", f.owner)
    except params.ParamError as exc:
        raise from_param_error(exc, "filter.") from None
    statuses = None if f.status is None else tuple(dict.fromkeys(s.value for s in f.status))
    if statuses == ():
        raise bad_input("filter.status", "must list at least one status (or be left out)")
    names = {
        "opened_from": "openedFrom",
        "opened_to": "openedTo",
        "closed_from": "closedFrom",
        "closed_to": "closedTo",
    }
    blocks = {name: _block(f"filter.{gql}", getattr(f, name)) for name, gql in names.items()}
    _range("filter.openedFrom", blocks["opened_from"], "openedTo", blocks["opened_to"])
    _range("filter.closedFrom", blocks["closed_from"], "closedTo", blocks["closed_to"])
    return params.PositionFilter(
        statuses=statuses,
        market=market,
        owner=owner,
        sort=order_by.value,
        order=direction.value,
        opened_from=blocks["opened_from"],
        opened_to=blocks["opened_to"],
        closed_from=blocks["closed_from"],
        closed_to=blocks["closed_to"],
    )


def _timestamps(since: int | None, until: int | None) -> None:
    for name, value in (("filter.since", since), ("filter.until", until)):
        if value is not None and not 0 <= value <= params.MAX_TIMESTAMP:
            raise bad_input(name, "must be unix seconds >= 0")
    _range("filter.since", since, "until", until)


def liquidation_filter(f: LiquidationFilter | None) -> params.LiquidationFilter:
    f = f or LiquidationFilter()
    _timestamps(f.since, f.until)
    try:
        return params.LiquidationFilter(
            market=params.parse_market(f.market),
            owner=params.parse_address("owner", f.owner),
            liquidator=params.parse_address("liquidator", f.liquidator),
            since=f.since,
            until=f.until,
        )
    except params.ParamError as exc:
        raise from_param_error(exc, "filter.") from None


def funding_filter(f: FundingFilter | None, direction: Direction) -> params.FundingFilter:
    f = f or FundingFilter()
    _timestamps(f.since, f.until)
    try:
        market = params.parse_market(f.market)
    except params.ParamError as exc:
        raise from_param_error(exc, "filter.") from None
    return params.FundingFilter(market=market, since=f.since, until=f.until, order=direction.value)


async def _connection(
    ctx: OperationContext,
    page: tuple[str, str, list[Any], list[Any]],
    first: int,
    shape: Shape,
    cursor_of: Callable[[Mapping[str, Any]], Cursor],
    total: Callable[[str, list[Any]], Awaitable[int]] | None = None,
) -> Connection[Any]:
    page_sql, count_sql, page_args, count_args = page
    rows = await ctx.snapshot.fetch(page_sql, *page_args)
    more = len(rows) > first
    rows = rows[:first]
    cursors = [cursor_of(r).encode() for r in rows]
    nodes = [Row(r, shape) for r in rows]

    async def count() -> int:
        return await (total or ctx.count)(count_sql, count_args)

    return Connection(
        edges=[{"cursor": c, "node": n} for c, n in zip(cursors, nodes, strict=True)],  # type: ignore[misc]
        nodes=nodes,  # type: ignore[arg-type]
        page_info=PageInfo(has_next_page=more, end_cursor=cursors[-1] if cursors else None),
        count=count,
    )


@strawberry.type
class Query:
    @strawberry.field(description="Positions, filtered and ordered, a page at a time.")
    async def positions(
        self,
        info: strawberry.Info,
        filter: PositionFilter | None = None,
        order_by: PositionOrderBy = PositionOrderBy.OPENED,
        direction: Direction = Direction.DESC,
        first: int = CONNECTIONS["positions"][0],
        after: str | None = None,
    ) -> Connection[Position]:
        f = position_filter(filter, order_by, direction)
        size = _page_size("positions", first)
        cursor = _cursor(after, position_ordering(f), 1 if f.sort == "token_id" else 2)
        return await _connection(
            _ctx(info),
            positions_page_sql(f, cursor, size),
            size,
            POSITION,
            lambda r: position_cursor(f, r),
            lambda sql, args: _ctx(info).position_total(f, sql, args),
        )

    @strawberry.field(description="One position with its events; null when unknown.")
    async def position(self, info: strawberry.Info, token_id: BigInt) -> Position | None:
        if token_id < 0:
            raise bad_input("tokenId", "must be >= 0")
        rows = await _ctx(info).snapshot.fetch(f"{POSITION_SELECT} WHERE p.token_id = $1", token_id)
        return Row(rows[0], POSITION) if rows else None  # type: ignore[return-value]

    @strawberry.field(description="Every market with its statistics (as GET /api/markets).")
    async def markets(self, info: strawberry.Info) -> list[Market]:
        rows = await _ctx(info).snapshot.fetch(MARKET_STATS_SQL)
        return [Row(r, MARKET) for r in rows]  # type: ignore[misc]

    @strawberry.field(description="One market by pair (ETH/USDT) or 0x id; null when unknown.")
    async def market(self, info: strawberry.Info, market: str) -> Market | None:
        try:
            ref = params.parse_market(market)
        except params.ParamError as exc:
            raise from_param_error(exc) from None
        assert ref is not None
        for row in await _ctx(info).snapshot.fetch(MARKET_STATS_SQL):
            if row["market_id"] == ref.market_id:
                return Row(row, MARKET)  # type: ignore[return-value]
        return None

    @strawberry.field(description="Liquidation calls, newest first unless direction is ASC.")
    async def liquidations(
        self,
        info: strawberry.Info,
        filter: LiquidationFilter | None = None,
        direction: Direction = Direction.DESC,
        first: int = CONNECTIONS["liquidations"][0],
        after: str | None = None,
    ) -> Connection[Liquidation]:
        f = liquidation_filter(filter)
        size = _page_size("liquidations", first)
        d = direction.value
        cursor = _cursor(after, event_ordering("liquidations", d), 2)
        return await _connection(
            _ctx(info),
            liquidations_page_sql(f, d, cursor, size),
            size,
            LIQUIDATION,
            lambda r: event_cursor("liquidations", d, r),
        )

    @strawberry.field(description="Funding rate updates, newest first unless direction is ASC.")
    async def funding_updates(
        self,
        info: strawberry.Info,
        filter: FundingFilter | None = None,
        direction: Direction = Direction.DESC,
        first: int = CONNECTIONS["fundingUpdates"][0],
        after: str | None = None,
    ) -> Connection[FundingUpdate]:
        f = funding_filter(filter, direction)
        size = _page_size("fundingUpdates", first)
        cursor = _cursor(after, event_ordering("funding_updates", f.order), 2)
        return await _connection(
            _ctx(info),
            funding_page_sql(f, cursor, size),
            size,
            FUNDING,
            lambda r: event_cursor("funding_updates", f.order, r),
        )

    @strawberry.field(description="How far the indexer is, and how far behind the chain.")
    async def sync_status(self, info: strawberry.Info) -> SyncStatus:
        ctx = _ctx(info)
        return await sync_status(ctx.snapshot, ctx.service.head)
