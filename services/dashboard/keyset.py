"""Keyset (cursor) pagination over the dashboard's queries (pure).

A page is the rows after the cursor's row in the query's order, fetched with a `WHERE (sort key,
tie-breaker) < (cursor values)` condition instead of an OFFSET, so page 2,000 costs what page 1
costs and rows inserted meanwhile neither repeat nor vanish. The cursor is opaque to clients:
base64url of a small JSON array naming the ordering it belongs to and the last row's key.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.dashboard.params import FundingFilter, LiquidationFilter, PositionFilter
from services.dashboard.repository import (
    CLOSED_SENTINEL,
    POSITION_SORT_COLUMN,
    Where,
    funding_where,
    liquidation_where,
    position_order_sql,
    position_sort_column,
    position_where,
)
from shared.readmodel.queries import FUNDING_SELECT, LIQUIDATION_SELECT, POSITION_SELECT

MAX_CURSOR_LENGTH = 512


class CursorError(ValueError):
    """A cursor that is malformed or belongs to another ordering."""


@dataclass(frozen=True)
class Cursor:
    ordering: str  # e.g. "positions:opened:desc"
    key: tuple[int | None, ...]

    def encode(self) -> str:
        raw = json.dumps([self.ordering, *self.key], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, ordering: str, size: int) -> Cursor:
        """Parse a client's cursor, checking it was made for `ordering` with `size` values."""
        if len(text) > MAX_CURSOR_LENGTH:
            raise CursorError("is not a cursor returned by this API (too long)")
        try:
            raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            data = json.loads(raw)
        except (binascii.Error, ValueError, UnicodeDecodeError):
            raise CursorError("is not a cursor returned by this API") from None
        if not isinstance(data, list) or len(data) != size + 1 or not isinstance(data[0], str):
            raise CursorError("is not a cursor returned by this API")
        if data[0] != ordering:
            raise CursorError(
                f"was returned for another ordering ({data[0]}), not {ordering}: start again "
                "without a cursor when changing the order"
            )
        key = data[1:]
        if not all(v is None or (isinstance(v, int) and not isinstance(v, bool)) for v in key):
            raise CursorError("is not a cursor returned by this API")
        return cls(ordering, tuple(key))


def position_ordering(f: PositionFilter) -> str:
    return f"positions:{f.sort}:{f.order}"


def position_cursor(f: PositionFilter, row: Mapping[str, Any]) -> Cursor:
    """The cursor after `row` (a POSITION_SELECT record) in f's ordering."""
    token = int(row["token_id"])
    if f.sort == "token_id":
        return Cursor(position_ordering(f), (token,))
    if f.sort == "closed":
        closed = row["closed_block"]
        value = CLOSED_SENTINEL[f.order] if closed is None else int(closed)
    else:
        value = int(row[POSITION_SORT_COLUMN[f.sort].removeprefix("p.")])
    return Cursor(position_ordering(f), (value, token))


def _after_position(where: Where, f: PositionFilter, cursor: Cursor) -> None:
    op = "<" if f.order == "desc" else ">"
    column = position_sort_column(f.sort, f.order)
    if None in cursor.key:
        raise CursorError("is not a cursor returned by this API")
    if column is None:
        where.add(f"p.token_id {op} {{}}::numeric", cursor.key[0])
        return
    cast = "::bigint" if f.sort in ("opened", "closed") else "::numeric"
    where.add(f"({column}, p.token_id) {op} ({{}}{cast}, {{}}::numeric)", *cursor.key)


def positions_page_sql(
    f: PositionFilter, after: Cursor | None, first: int
) -> tuple[str, str, list[Any], list[Any]]:
    """(page query, count query, page args, count args). The page asks for first + 1 rows: the
    extra one only says whether there is a next page."""
    where = position_where(f)
    count = f"SELECT count(*) FROM positions p {where.sql()}"
    count_args = list(where.args)
    if after is not None:
        _after_position(where, f, after)
    order = position_order_sql(f.sort, f.order)
    filters = where.sql()
    limit = where.param(first + 1)
    return (
        f"{POSITION_SELECT} {filters} ORDER BY {order} LIMIT {limit}",
        count,
        where.args,
        count_args,
    )


def event_ordering(table: str, direction: str) -> str:
    return f"{table}:{direction}"


def event_cursor(table: str, direction: str, row: Mapping[str, Any]) -> Cursor:
    return Cursor(
        event_ordering(table, direction), (int(row["block_number"]), int(row["log_index"]))
    )


def _events_page(
    select: str,
    alias: str,
    table: str,
    where: Where,
    direction: str,
    after: Cursor | None,
    first: int,
) -> tuple[str, str, list[Any], list[Any]]:
    count = f"SELECT count(*) FROM {table} {alias} {where.sql()}"
    count_args = list(where.args)
    if after is not None:
        block, log_index = after.key
        if block is None or log_index is None:
            raise CursorError("is not a cursor returned by this API")
        op = "<" if direction == "desc" else ">"
        where.add(
            f"({alias}.block_number, {alias}.log_index) {op} ({{}}::bigint, {{}}::int)",
            block,
            log_index,
        )
    d = direction.upper()
    filters = where.sql()
    limit = where.param(first + 1)
    order = f"{alias}.block_number {d}, {alias}.log_index {d}"
    return f"{select} {filters} ORDER BY {order} LIMIT {limit}", count, where.args, count_args


def liquidations_page_sql(
    f: LiquidationFilter, direction: str, after: Cursor | None, first: int
) -> tuple[str, str, list[Any], list[Any]]:
    where = liquidation_where(f)
    return _events_page(LIQUIDATION_SELECT, "l", "liquidations", where, direction, after, first)


def funding_page_sql(
    f: FundingFilter, after: Cursor | None, first: int
) -> tuple[str, str, list[Any], list[Any]]:
    where = funding_where(f)
    return _events_page(FUNDING_SELECT, "f", "funding_updates", where, f.order, after, first)
