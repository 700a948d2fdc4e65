"""Funding figures for people (pure): rates in % per interval and annualized, durations, times.

On chain, `fundingRate` is an 18-decimal fraction (WAD) of the index price paid per funding
interval, positive when longs pay shorts; `cumulativeFundingIndex` is the longs' cumulative index
(quote per unit of base paid; each side has its own since funding is zero-sum).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal, localcontext

WAD = 10**18
SECONDS_PER_YEAR = 365 * 24 * 3600


def rate_fraction(rate_wad: int) -> Decimal:
    """The rate as a plain fraction per interval (0.0001 = 0.01%)."""
    with localcontext() as ctx:
        ctx.prec = 50
        return Decimal(rate_wad) / Decimal(WAD)


def rate_pct(rate_wad: int) -> Decimal:
    """Percent per funding interval."""
    with localcontext() as ctx:
        ctx.prec = 50
        return rate_fraction(rate_wad) * 100


def annualized_pct(rate_wad: int, interval_s: int) -> Decimal:
    """Percent per year if the rate held for every interval of a 365-day year (simple, not
    compounded): rate x (seconds per year / interval) x 100."""
    if interval_s <= 0:
        raise ValueError("funding interval must be positive")
    with localcontext() as ctx:
        ctx.prec = 50
        return rate_pct(rate_wad) * Decimal(SECONDS_PER_YEAR) / Decimal(interval_s)


def format_pct(value: Decimal, places: int = 4) -> str:
    quantum = Decimal(1).scaleb(-places)
    return f"{value.quantize(quantum):+f}%"


def format_interval(seconds: int) -> str:
    """8h, 30m, 1h30m, 45s: the compact form used after a rate ("% / 8h")."""
    if seconds <= 0:
        return "0s"
    h, rem = divmod(seconds, 3600)
    m, s = divmod(rem, 60)
    parts = [f"{h}h" if h else "", f"{m}m" if m else "", f"{s}s" if s else ""]
    return "".join(parts)


def format_rate(rate_wad: int, interval_s: int, places: int = 4) -> str:
    """`+0.0100% / 8h (+10.9500% APR)`."""
    per = format_pct(rate_pct(rate_wad), places)
    apr = format_pct(annualized_pct(rate_wad, interval_s), places)
    return f"{per} / {format_interval(interval_s)} ({apr} APR)"


def format_duration(seconds: float) -> str:
    """Remaining time: `7h 59m 12s`, `4m 05s`, `12s`, `0s`."""
    total = max(0, int(seconds))
    h, rem = divmod(total, 3600)
    m, s = divmod(rem, 60)
    if h:
        return f"{h}h {m:02d}m {s:02d}s"
    if m:
        return f"{m}m {s:02d}s"
    return f"{s}s"


def format_timestamp(ts: int) -> str:
    """A chain timestamp as ISO-8601 UTC (`2026-11-24T08:00:00Z`)."""
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
