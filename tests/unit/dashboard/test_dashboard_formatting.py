from __future__ import annotations

from decimal import Decimal

import pytest

from services.dashboard.formatting import (
    format_event_args,
    format_funding,
    format_market,
    format_position,
    iso_time,
    to_int,
    wad_to_percent,
    wad_to_str,
)
from services.dashboard.live_format import event_summary, format_event
from shared.events.schema import EventEnvelope

WAD = 10**18


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (0, "0"),
        (WAD, "1"),
        (15 * 10**17, "1.5"),
        (1, "0.000000000000000001"),
        (-(10**17), "-0.1"),
        (-2 * WAD, "-2"),
        (123_456_789 * WAD + 5, "123456789.000000000000000005"),
        ("2500000000000000000000", "2500"),
        (Decimal("7000000000000000000"), "7"),
        (2**255, "57896044618658097711785492504343953926634992332820282019728.792003956564819968"),
    ],
)
def test_wad_to_str_is_exact(raw: object, expected: str) -> None:
    assert wad_to_str(raw) == expected


def test_wad_to_str_truncates_toward_zero() -> None:
    assert wad_to_str(1_999_999 * 10**12, 2) == "1.99"
    assert wad_to_str(-1_999_999 * 10**12, 2) == "-1.99"
    assert wad_to_str(10**15, 2) == "0"  # 0.001 -> 0, never "-0"
    assert wad_to_str(-(10**15), 2) == "0"
    assert wad_to_str(None) is None


def test_wad_to_percent() -> None:
    assert wad_to_percent(10**16) == "1"
    assert wad_to_percent(5 * 10**13) == "0.005"
    assert wad_to_percent(-(10**14)) == "-0.01"
    assert wad_to_percent(None) is None


@pytest.mark.parametrize("bad", ["1.5", "abc", "", Decimal("1.5"), True, 1.0])
def test_to_int_rejects_non_integers(bad: object) -> None:
    with pytest.raises((TypeError, ValueError)):
        to_int(bad)


def test_iso_time() -> None:
    assert iso_time(0) == "1970-01-01T00:00:00Z"
    assert iso_time(Decimal(1_700_000_000)) == "2023-11-14T22:13:20Z"
    assert iso_time(None) is None


def _position(**over: object) -> dict[str, object]:
    row: dict[str, object] = {
        "token_id": Decimal(7),
        "market_id": "0xab",
        "market": "ETH/USDT",
        "owner": "0x" + "11" * 20,
        "is_long": False,
        "status": "closed",
        "collateral": Decimal(1000 * WAD),
        "leverage": Decimal(5 * WAD),
        "size": Decimal(25 * 10**17),
        "notional": Decimal(5000 * WAD),
        "entry_price": Decimal(2000 * WAD),
        "entry_funding_index": Decimal(0),
        "open_fee": Decimal(5 * WAD),
        "opened_block": 10,
        "opened_timestamp": 1_700_000_000,
        "opened_tx": "0xtx",
        "closed_block": 12,
        "closed_timestamp": 1_700_000_060,
        "closed_tx": "0xtx2",
        "exit_price": Decimal(1900 * WAD),
        "realized_pnl": Decimal(250 * WAD),
        "funding_payment": Decimal(-3 * 10**17),
        "payout": Decimal(1245 * WAD),
        "updated_block": 12,
    }
    row.update(over)
    return row


def test_format_position_converts_wads_and_keeps_raw() -> None:
    out = format_position(_position())
    assert out["token_id"] == 7 and isinstance(out["token_id"], int)
    assert out["side"] == "short"
    assert out["size"] == "2.5"
    assert out["leverage"] == "5"
    assert out["funding_payment"] == "-0.3"
    assert out["wad"]["size"] == str(25 * 10**17)
    assert out["opened_at"] == "2023-11-14T22:13:20Z"
    assert out["closed_at"] == "2023-11-14T22:14:20Z"


def test_format_position_open_has_nulls() -> None:
    out = format_position(
        _position(
            status="open",
            is_long=True,
            closed_block=None,
            closed_timestamp=None,
            exit_price=None,
            realized_pnl=None,
            payout=None,
            funding_payment=None,
        )
    )
    assert out["side"] == "long"
    assert out["exit_price"] is None and out["wad"]["exit_price"] is None
    assert out["closed_at"] is None


def test_format_funding_and_market() -> None:
    f = format_funding(
        {
            "market_id": "0xab",
            "market": "ETH/USDT",
            "funding_rate": Decimal(-(10**14)),
            "cumulative_funding_index": Decimal(3 * WAD),
            "mark_twap": Decimal(2001 * WAD),
            "index_twap": Decimal(2000 * WAD),
            "funding_timestamp": 1_700_000_000,
        }
    )
    assert f["funding_rate"] == "-0.0001"
    assert f["funding_rate_pct"] == "-0.01"
    assert f["time"] == "2023-11-14T22:13:20Z"
    m = format_market(
        {
            "market_id": "0xab",
            "pair": "ETH/USDT",
            "open_positions": 3,
            "open_interest_long": Decimal(10_000 * WAD),
            "open_interest_short": Decimal(0),
            "funding_rate": None,
            "last_funding_time": None,
            "last_liquidation_timestamp": None,
        }
    )
    assert m["open_interest_long"] == "10000"
    assert m["open_interest_short"] == "0"
    assert m["funding_rate"] is None and m["funding_rate_pct"] is None


def test_format_event_args_only_touches_wad_args() -> None:
    args = {"tokenId": "5", "isLong": True, "size": "2500000000000000000", "owner": "0xabc"}
    out = format_event_args("PositionOpened", args)
    assert out == {"tokenId": "5", "isLong": True, "size": "2.5", "owner": "0xabc"}
    # Unknown events and unreadable values pass through.
    assert format_event_args("PositionMinted", {"tokenId": "5"}) == {"tokenId": "5"}
    assert format_event_args("PositionOpened", {"size": "n/a"}) == {"size": "n/a"}


def test_event_summaries() -> None:
    opened = {
        "isLong": True,
        "size": str(25 * 10**17),
        "entryPrice": str(2000 * WAD),
        "leverage": str(5 * WAD),
        "collateral": str(1000 * WAD),
    }
    assert (
        event_summary("PositionOpened", "ETH/USDT", opened)
        == "long 2.5 ETH/USDT @ 2000 (5x, collateral 1000)"
    )
    liq = {
        "price": str(1500 * WAD),
        "liquidator": "0x" + "ab" * 20,
        "liquidatorReward": str(12 * 10**17),
    }
    assert (
        event_summary("PositionLiquidated", "ETH/USDT", liq)
        == "liquidated on ETH/USDT @ 1500 by 0xabab…abab, reward 1.2"
    )
    assert (
        event_summary("FundingRateUpdated", "BTC/USDT", {"fundingRate": str(10**14)})
        == "funding rate 0.01% on BTC/USDT"
    )
    assert event_summary("MarketPaused", "ETH/USDT", {"paused": True}) == "market ETH/USDT paused"
    # Missing or bad args never raise.
    assert "?" in event_summary("PositionClosed", None, {"exitPrice": "bad"})


def test_format_event_from_envelope() -> None:
    env = EventEnvelope(
        event_id="31337:0xaa:1",
        name="MarginChanged",
        chain_id=31337,
        contract="0xcc",
        block_number=42,
        block_hash="0xbb",
        block_timestamp=1_700_000_000,
        tx_hash="0xaa",
        log_index=1,
        market_id="0xab",
        market="ETH/USDT",
        token_id=9,
        args={"delta": str(-50 * WAD), "newCollateral": str(950 * WAD)},
        reverted=True,
    )
    out = format_event(env)
    assert out["display"]["delta"] == "-50"
    assert out["args"]["delta"] == str(-50 * WAD)
    assert out["reverted"] is True
    assert out["token_id"] == 9
    assert out["summary"] == "margin -50 on ETH/USDT, collateral now 950"
    assert out["time"] == "2023-11-14T22:13:20Z"
