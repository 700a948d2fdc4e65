"""Per-market funding status (pure): the figures `perpex funding status` prints, the service
logs and exports as metrics, computed from one chain reading."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.funding.rates import (
    annualized_pct,
    format_duration,
    format_interval,
    format_pct,
    format_rate,
    format_timestamp,
    rate_pct,
)
from services.funding.schedule import next_window_at, overdue_seconds, seconds_to_next_window


@dataclass(frozen=True)
class MarketStatus:
    pair: str
    market_id: str  # 0x-hex bytes32
    last_funding_time: int
    interval: int
    rate_wad: int
    cumulative_index: int
    chain_time: int
    paused: bool = False

    @property
    def next_funding_time(self) -> int:
        return next_window_at(self.last_funding_time, self.interval)

    @property
    def seconds_to_next(self) -> int:
        return seconds_to_next_window(self.last_funding_time, self.interval, self.chain_time)

    @property
    def overdue(self) -> int:
        return overdue_seconds(self.last_funding_time, self.interval, self.chain_time)

    @property
    def due(self) -> bool:
        return self.chain_time >= self.next_funding_time

    def as_dict(self) -> dict[str, Any]:
        return {
            "market": self.pair,
            "market_id": self.market_id,
            "last_funding_time": self.last_funding_time,
            "last_funding_time_utc": format_timestamp(self.last_funding_time),
            "funding_interval_s": self.interval,
            "funding_rate_wad": str(self.rate_wad),
            "funding_rate_pct": _plain(rate_pct(self.rate_wad)),
            "funding_rate_apr_pct": _plain(annualized_pct(self.rate_wad, self.interval)),
            "cumulative_funding_index": str(self.cumulative_index),
            "next_funding_time": self.next_funding_time,
            "next_funding_time_utc": format_timestamp(self.next_funding_time),
            "seconds_to_next_window": self.seconds_to_next,
            "overdue_s": self.overdue,
            "due": self.due,
            "paused": self.paused,
            "chain_time": self.chain_time,
        }

    def log_line(self) -> str:
        return (
            f"{self.pair}: last funding {format_timestamp(self.last_funding_time)}, "
            f"rate {format_rate(self.rate_wad, self.interval)}, {window_text(self)}"
        )


def _plain(value: Decimal) -> str:
    """A Decimal without exponent or trailing zeros: 0.01, -87.6, 0."""
    text = f"{value.normalize():f}"
    return "0" if text in ("-0", "0") else text


def window_text(s: MarketStatus) -> str:
    if s.due:
        return f"window open (due for {format_duration(s.overdue)})"
    return f"next window in {format_duration(s.seconds_to_next)}"


HEADERS = ("MARKET", "LAST FUNDING (UTC)", "RATE", "APR", "INTERVAL", "NEXT WINDOW")


def format_status_table(rows: Sequence[MarketStatus]) -> str:
    """A fixed-width table, one line per market, plus the chain time it was read at."""
    if not rows:
        return "no markets"
    body = [
        (
            s.pair + (" (paused)" if s.paused else ""),
            format_timestamp(s.last_funding_time),
            format_pct(rate_pct(s.rate_wad)),
            format_pct(annualized_pct(s.rate_wad, s.interval), 2),
            format_interval(s.interval),
            "DUE NOW" + (f" (+{format_duration(s.overdue)})" if s.overdue else "")
            if s.due
            else "in " + format_duration(s.seconds_to_next),
        )
        for s in rows
    ]
    widths = [max(len(h), *(len(r[i]) for r in body)) for i, h in enumerate(HEADERS)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True)).rstrip()]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in body]
    chain_time = max(s.chain_time for s in rows)
    lines.append(f"chain time {format_timestamp(chain_time)} ({chain_time})")
    return "\n".join(lines)
