"""Funding math view helpers and status formatting (pure)."""

from __future__ import annotations

from decimal import Decimal

from services.funding.rates import (
    annualized_pct,
    format_duration,
    format_interval,
    format_rate,
    format_timestamp,
    rate_fraction,
    rate_pct,
)
from services.funding.status import MarketStatus, format_status_table

WAD = 10**18
H8 = 8 * 3600


def test_rate_views() -> None:
    one_bp = WAD // 10_000  # 0.01% per interval
    assert rate_fraction(one_bp) == Decimal("0.0001")
    assert rate_pct(one_bp) == Decimal("0.01")
    # 3 intervals a day, 365 days: 0.01% x 1095 = 10.95%
    assert annualized_pct(one_bp, H8) == Decimal("10.95")
    assert annualized_pct(-one_bp, 3600) == Decimal("-87.6")
    assert format_rate(one_bp, H8) == "+0.0100% / 8h (+10.9500% APR)"
    assert format_rate(-2 * one_bp, 3600, places=2) == "-0.02% / 1h (-175.20% APR)"
    assert format_rate(0, H8).startswith("+0.0000%")


def test_durations_and_times() -> None:
    assert format_duration(0) == "0s"
    assert format_duration(-5) == "0s"
    assert format_duration(12.9) == "12s"
    assert format_duration(245) == "4m 05s"
    assert format_duration(H8 - 48) == "7h 59m 12s"
    assert format_interval(H8) == "8h"
    assert format_interval(5400) == "1h30m"
    assert format_interval(45) == "45s"
    assert format_timestamp(0) == "1970-01-01T00:00:00Z"
    assert format_timestamp(1_795_603_456) == "2026-11-25T10:44:16Z"


def _status(
    pair: str, last: int, now: int, rate: int = WAD // 10_000, **kw: object
) -> MarketStatus:
    return MarketStatus(
        pair=pair,
        market_id="0x" + "ab" * 32,
        last_funding_time=last,
        interval=H8,
        rate_wad=rate,
        cumulative_index=12345,
        chain_time=now,
        **kw,  # type: ignore[arg-type]
    )


def test_market_status_figures() -> None:
    s = _status("ETH/USDT", 1_000, 1_000 + 3600)
    assert s.next_funding_time == 1_000 + H8
    assert s.seconds_to_next == H8 - 3600
    assert not s.due and s.overdue == 0
    d = s.as_dict()
    assert d["seconds_to_next_window"] == H8 - 3600
    assert d["funding_rate_pct"] == "0.01"
    assert d["funding_rate_wad"] == str(WAD // 10_000)  # big ints as strings
    assert d["last_funding_time_utc"] == "1970-01-01T00:16:40Z"
    assert "next window in 7h 00m 00s" in s.log_line()
    late = _status("BTC/USDT", 1_000, 1_000 + H8 + 90)
    assert late.due and late.overdue == 90 and late.seconds_to_next == 0
    assert "window open (due for 1m 30s)" in late.log_line()


def test_status_table() -> None:
    rows = [
        _status("ETH/USDT", 1_000, 1_000 + 3600),
        _status("BTC/USDT", 1_000, 1_000 + H8 + 90, rate=-(WAD // 1000), paused=True),
    ]
    table = format_status_table(rows)
    lines = table.splitlines()
    assert lines[0].split()[:3] == ["MARKET", "LAST", "FUNDING"]
    assert "ETH/USDT" in lines[1] and "+0.0100%" in lines[1] and "in 7h 00m 00s" in lines[1]
    assert "+10.95%" in lines[1] and "8h" in lines[1]
    assert "BTC/USDT (paused)" in lines[2] and "-0.1000%" in lines[2]
    assert "DUE NOW (+1m 30s)" in lines[2]
    assert lines[3].startswith("chain time ")
    # columns line up
    assert lines[1].index("1970") == lines[2].index("1970")
    assert format_status_table([]) == "no markets"
