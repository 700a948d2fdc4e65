"""The read model of the indexer's tables (shared/readmodel): the SELECTs its readers share keep
the API's column order, and the column kinds the dashboard formats by."""

from __future__ import annotations

import re

import pytest

from shared.readmodel import queries, tables


def _selected(sql: str) -> list[str]:
    items = re.search(r"SELECT (.*?)\nFROM", sql, re.S)
    assert items is not None
    parts = re.split(r",(?![^()]*\))", items.group(1))  # commas outside parentheses
    return [i.strip().split(" AS ")[-1].split(".")[-1] for i in parts]


def test_the_dashboards_selects_keep_the_apis_column_order() -> None:
    assert _selected(queries.POSITION_SELECT) == [
        "token_id", "market_id", "market", "owner", "is_long", "status", "collateral",
        "leverage", "size", "notional", "entry_price", "entry_funding_index", "open_fee",
        "opened_block", "opened_timestamp", "opened_tx", "closed_block", "closed_timestamp",
        "closed_tx", "exit_price", "realized_pnl", "funding_payment", "payout",
        "updated_block", "close_fee",
    ]  # fmt: skip
    assert "COALESCE(p.market, m.pair) AS market" in queries.POSITION_SELECT
    assert _selected(queries.LIQUIDATION_SELECT) == [
        "token_id", "market_id", "market", "owner", "liquidator", "tx_hash", "log_index",
        "block_number", "block_timestamp", "price", "realized_pnl", "reward", "owner_refund",
        "bad_debt", "size", "remaining_size", "funding_payment", "insurance_fee",
    ]  # fmt: skip
    assert _selected(queries.FUNDING_SELECT) == [
        "market_id", "market", "funding_rate", "cumulative_funding_index", "mark_twap",
        "index_twap", "funding_timestamp", "tx_hash", "log_index", "block_number",
        "block_timestamp", "funding_per_second", "cumulative_funding_short",
    ]  # fmt: skip
    for sql, alias in ((queries.LIQUIDATION_SELECT, "l"), (queries.FUNDING_SELECT, "f")):
        assert f"LEFT JOIN markets m ON m.market_id = {alias}.market_id" in sql


def test_wad_and_numeric_columns() -> None:
    position_wads = tables.wad_columns(tables.PositionRow)
    assert set(position_wads) == {
        "collateral", "leverage", "size", "notional", "entry_price", "entry_funding_index",
        "open_fee", "exit_price", "realized_pnl", "funding_payment", "payout", "close_fee",
    }  # fmt: skip
    assert tables.NUMERIC_POSITION_COLUMNS == {"token_id", *position_wads}
    assert set(tables.wad_columns(tables.LiquidationRow)) == {
        "price", "realized_pnl", "reward", "owner_refund", "bad_debt", "size",
        "remaining_size", "funding_payment", "insurance_fee",
    }  # fmt: skip
    assert set(tables.wad_columns(tables.FundingRow)) == {
        "funding_rate", "cumulative_funding_index", "cumulative_funding_short", "mark_twap",
        "index_twap", "funding_per_second",
    }  # fmt: skip
    assert set(tables.wad_columns(tables.MarketState)) == {
        "funding_rate", "cumulative_funding_index", "cumulative_funding_short",
        "funding_per_second",
    }  # fmt: skip


def test_open_positions_select_names_only_columns_of_positions() -> None:
    sql = queries.open_positions_sql(["token_id", "size"])
    assert sql == "SELECT token_id, size FROM positions WHERE status = 'open'"
    with pytest.raises(ValueError, match="sise"):
        queries.open_positions_sql(["token_id", "sise"])
