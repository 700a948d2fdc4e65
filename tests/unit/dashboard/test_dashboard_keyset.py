"""Keyset cursors and page SQL (pure)."""

from __future__ import annotations

import pytest

from services.dashboard.keyset import (
    Cursor,
    CursorError,
    funding_page_sql,
    liquidations_page_sql,
    position_cursor,
    position_ordering,
    positions_page_sql,
)
from services.dashboard.params import (
    FundingFilter,
    LiquidationFilter,
    PositionFilter,
    parse_position_filter,
)
from services.dashboard.repository import (
    CLOSED_SENTINEL,
    groups_answer,
    position_order_sql,
    total_from_groups,
)


def test_cursor_round_trip_and_refusals() -> None:
    cursor = Cursor("positions:opened:desc", (123, 2**200))
    text = cursor.encode()
    assert "=" not in text
    assert Cursor.decode(text, "positions:opened:desc", 2) == cursor
    with pytest.raises(CursorError, match="another ordering"):
        Cursor.decode(text, "positions:notional:desc", 2)
    for bad in (
        "",
        "!!!",
        "bm90IGpzb24",
        Cursor("positions:opened:desc", (1,)).encode(),
        "x" * 600,
    ):
        with pytest.raises(CursorError, match="not a cursor"):
            Cursor.decode(bad, "positions:opened:desc", 2)
    sneaky = Cursor("positions:opened:desc", (True, 1)).encode()  # type: ignore[arg-type]
    with pytest.raises(CursorError):
        Cursor.decode(sneaky, "positions:opened:desc", 2)


def test_position_page_sql_binds_every_value() -> None:
    f = parse_position_filter(
        [("status", "open"), ("owner", "0x" + "11" * 20), ("sort", "notional")]
    )
    after = Cursor(position_ordering(f), (5 * 10**21, 7))
    page, count, args, count_args = positions_page_sql(f, after, 20)
    assert "(p.notional, p.token_id) < ($3::numeric, $4::numeric)" in page
    assert page.rstrip().endswith("ORDER BY p.notional DESC, p.token_id DESC LIMIT $5")
    assert args == ["open", "0x" + "11" * 20, 5 * 10**21, 7, 21]
    assert count_args == ["open", "0x" + "11" * 20] and "$3" not in count


def test_closed_order_puts_open_positions_last_both_ways() -> None:
    assert position_order_sql("closed", "desc") == (
        "COALESCE(p.closed_block, -1) DESC, p.token_id DESC"
    )
    assert position_order_sql("closed", "asc").startswith(
        f"COALESCE(p.closed_block, {2**63 - 1}) ASC"
    )
    f = PositionFilter(sort="closed", order="asc")
    still_open = {"token_id": 9, "closed_block": None}
    assert position_cursor(f, still_open).key == (CLOSED_SENTINEL["asc"], 9)
    page, _, args, _ = positions_page_sql(f, position_cursor(f, still_open), 5)
    assert f"(COALESCE(p.closed_block, {2**63 - 1}), p.token_id) > ($1::bigint" in page
    by_token = PositionFilter(sort="token_id", order="asc")
    page, _, args, _ = positions_page_sql(by_token, Cursor("positions:token_id:asc", (4,)), 5)
    assert "p.token_id > $1::numeric" in page and args == [4, 6]


def test_event_pages() -> None:
    after = Cursor("liquidations:desc", (40, 2))
    page, count, args, _ = liquidations_page_sql(LiquidationFilter(since=5), "desc", after, 10)
    assert "(l.block_number, l.log_index) < ($2::bigint, $3::int)" in page
    assert args == [5, 40, 2, 11] and "block_timestamp >= $1" in count
    page, _, args, _ = funding_page_sql(FundingFilter(order="asc"), None, 3)
    assert "ORDER BY f.block_number ASC, f.log_index ASC LIMIT $1" in page and args == [4]
    with pytest.raises(CursorError):
        liquidations_page_sql(
            LiquidationFilter(), "desc", Cursor("liquidations:desc", (None, 1)), 5
        )


def test_totals_from_market_status_groups() -> None:
    groups = [
        {"market_id": "0xa", "status": "open", "n": 3},
        {"market_id": "0xa", "status": "closed", "n": 4},
        {"market_id": "0xb", "status": "open", "n": 5},
    ]
    by_market = parse_position_filter([("market", "0x" + "0" * 64)])
    assert total_from_groups(groups, PositionFilter()) == 12
    assert total_from_groups(groups, PositionFilter(statuses=("open",))) == 8
    assert total_from_groups(groups, by_market) == 0
    assert groups_answer(PositionFilter(statuses=("open",))) and groups_answer(by_market)
    assert not groups_answer(PositionFilter(owner="0x" + "1" * 40))
    assert not groups_answer(PositionFilter(opened_from=0))
