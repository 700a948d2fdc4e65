from __future__ import annotations

import pytest

from services.dashboard.params import (
    MAX_LIMIT,
    ParamError,
    parse_funding_filter,
    parse_liquidation_filter,
    parse_market,
    parse_position_filter,
    parse_token_id,
)
from shared.chain.deployment import market_id_hex

OWNER = "0x" + "Ab" * 20


def _err(fn, *args) -> ParamError:  # type: ignore[no-untyped-def]
    with pytest.raises(ParamError) as info:
        fn(*args)
    return info.value


def test_position_defaults() -> None:
    f = parse_position_filter([])
    assert f.statuses is None and f.market is None and f.owner is None
    assert (f.sort, f.order, f.page.limit, f.page.offset) == ("opened", "desc", 50, 0)


def test_position_filters_parsed() -> None:
    f = parse_position_filter(
        [
            ("status", "open,Liquidated,open"),
            ("market", "ETH/USDT"),
            ("owner", OWNER),
            ("sort", "notional"),
            ("order", "ASC"),
            ("limit", "10"),
            ("offset", "20"),
        ]
    )
    assert f.statuses == ("open", "liquidated")
    assert f.market is not None and f.market.market_id == market_id_hex("ETH/USDT")
    assert f.owner == OWNER.lower()
    assert (f.sort, f.order, f.page.limit, f.page.offset) == ("notional", "asc", 10, 20)


def test_blank_values_mean_not_given_and_all_status() -> None:
    f = parse_position_filter([("status", "all"), ("market", ""), ("owner", "  ")])
    assert f.statuses is None and f.market is None and f.owner is None


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ([("status", "pending")], "status"),
        ([("limit", "0")], "limit"),
        ([("limit", str(MAX_LIMIT + 1))], "limit"),
        ([("limit", "ten")], "limit"),
        ([("limit", "-1")], "limit"),
        ([("offset", "1e3")], "offset"),
        ([("offset", "9" * 40)], "offset"),
        ([("owner", "0x1234")], "owner"),
        ([("market", "ETHUSDT")], "market"),
        ([("market", "0x" + "g" * 64)], "market"),
        ([("sort", "pnl")], "sort"),
        ([("order", "up")], "order"),
        ([("colour", "red")], "colour"),
        ([("limit", "5"), ("limit", "6")], "limit"),
    ],
)
def test_position_errors_name_the_parameter(items: list[tuple[str, str]], param: str) -> None:
    err = _err(parse_position_filter, items)
    assert err.param == param
    assert err.as_json()["param"] == param
    assert err.message


def test_unknown_parameter_lists_allowed() -> None:
    err = _err(parse_position_filter, [("stat", "open")])
    assert "status" in err.message and "unknown" in err.message


def test_market_id_is_accepted_and_lowercased() -> None:
    mid = "0x" + "AB" * 32
    ref = parse_market(mid)
    assert ref is not None and ref.market_id == mid.lower() and ref.label == mid


def test_liquidation_filter() -> None:
    f = parse_liquidation_filter(
        [("liquidator", OWNER), ("since", "100"), ("until", "200"), ("market", "BTC/USDT")]
    )
    assert f.liquidator == OWNER.lower()
    assert (f.since, f.until) == (100, 200)
    assert f.market is not None and f.market.label == "BTC/USDT"
    assert _err(parse_liquidation_filter, [("since", "300"), ("until", "200")]).param == "since"
    assert _err(parse_liquidation_filter, [("status", "open")]).param == "status"


def test_funding_filter_query_and_path() -> None:
    f = parse_funding_filter([("market", "ETH/USDT"), ("order", "asc")])
    assert f.market is not None and f.order == "asc" and f.page.limit == 500
    g = parse_funding_filter([("limit", "5000")], market="ETH/USDT")
    assert g.market == f.market and g.page.limit == 5000
    # With the market in the path, a market query parameter is unknown.
    assert _err(parse_funding_filter, [("market", "X/Y")], "ETH/USDT").param == "market"
    assert _err(parse_funding_filter, [("limit", "5001")]).param == "limit"
    assert _err(parse_funding_filter, [], "not a pair").param == "market"


def test_token_id() -> None:
    assert parse_token_id("42") == 42
    assert parse_token_id(str(2**256 - 1)) == 2**256 - 1
    assert _err(parse_token_id, str(2**256)).param == "token_id"
    assert _err(parse_token_id, "0x10").param == "token_id"
