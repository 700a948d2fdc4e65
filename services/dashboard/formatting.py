"""Pure formatting: database rows and Kafka envelopes -> JSON-ready dicts for the API and /ws.

Every price, amount, leverage and rate on chain is an 18-decimal fixed-point integer (WAD). The
API shows them as exact decimal strings ("1234.5", never floats, so nothing is rounded away)
and keeps the raw integers, as decimal strings, under "wad".
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared.events.names import EventName
from shared.readmodel import tables

WAD = 10**18

# Integer event arguments that are WAD fixed-point numbers, per event. Anything else that is an
# integer (tokenId, timestamp) is shown as is.
WAD_ARGS: dict[str, frozenset[str]] = {
    EventName.PositionOpened: frozenset(
        {"collateral", "leverage", "size", "notional", "entryPrice", "fee", "entryFundingIndex"}
    ),
    EventName.PositionClosed: frozenset(
        {"exitPrice", "realizedPnl", "fundingPayment", "payout", "fee"}
    ),
    EventName.PositionLiquidated: frozenset(
        {
            "price",
            "realizedPnl",
            "liquidatorReward",
            "ownerRefund",
            "badDebt",
            "size",
            "remainingSize",
            "fundingPayment",
            "insuranceFee",
        }
    ),
    EventName.PositionReduced: frozenset({"size", "notional", "collateral", "entryFundingIndex"}),
    EventName.PositionDecreased: frozenset(
        {"size", "exitPrice", "realizedPnl", "fundingPayment", "payout", "fee"}
    ),
    EventName.MarginChanged: frozenset({"delta", "newCollateral", "entryFundingIndex"}),
    EventName.FundingRateUpdated: frozenset(
        {
            "fundingRate",
            "cumulativeFundingLong",
            "cumulativeFundingShort",
            "markTwap",
            "indexTwap",
            "fundingPerSecond",
        }
    ),
}

POSITION_WAD_COLUMNS = tables.wad_columns(tables.PositionRow)
LIQUIDATION_WAD_COLUMNS = tables.wad_columns(tables.LiquidationRow)
FUNDING_WAD_COLUMNS = tables.wad_columns(tables.FundingRow)
# repository.MARKET_STATS_SQL: its totals, then the funding state of the markets row
MARKET_WAD_COLUMNS = (
    "open_interest_long",
    "open_interest_short",
    "open_size_long",
    "open_size_short",
    "open_collateral",
    "liquidation_rewards",
    "bad_debt",
    *tables.wad_columns(tables.MarketState),
)


def to_int(value: Any) -> int | None:
    """An integer from an int, an integral Decimal or a decimal string; None stays None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise TypeError("a bool is not an amount")
    if isinstance(value, int):
        return value
    if isinstance(value, Decimal):
        if value != value.to_integral_value():
            raise ValueError(f"{value} is not an integer")
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if not text or not text.lstrip("-").isdigit():
            raise ValueError(f"{value!r} is not a decimal integer")
        return int(text)
    raise TypeError(f"cannot read an integer from {type(value).__name__}")


def wad_to_str(value: Any, places: int | None = None) -> str | None:
    """Exact decimal string of a WAD integer: 1500000000000000000 -> "1.5", -10**17 -> "-0.1".

    `places` truncates (toward zero) to that many fraction digits. None stays None.
    """
    raw = to_int(value)
    if raw is None:
        return None
    sign = "-" if raw < 0 else ""
    whole, frac = divmod(abs(raw), WAD)
    digits = f"{frac:018d}"
    if places is not None:
        if places < 0:
            raise ValueError("places must be >= 0")
        digits = digits[:places]
    digits = digits.rstrip("0")
    if not whole and not digits:
        return "0"
    return f"{sign}{whole}.{digits}" if digits else f"{sign}{whole}"


def wad_to_percent(value: Any, places: int = 6) -> str | None:
    """A WAD ratio as a percentage string: 10**16 -> "1", 5*10**13 -> "0.005"."""
    raw = to_int(value)
    if raw is None:
        return None
    return wad_to_str(raw * 100, places)


def iso_time(timestamp: Any) -> str | None:
    """Unix seconds -> ISO 8601 UTC ("2026-01-02T03:04:05Z")."""
    seconds = to_int(timestamp)
    if seconds is None:
        return None
    return datetime.fromtimestamp(seconds, tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _raw(value: Any) -> str | None:
    raw = to_int(value)
    return None if raw is None else str(raw)


def _plain(value: Any) -> Any:
    """JSON-safe scalar: Decimals become ints (or strings when not integral)."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else str(value)
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return value


def _with_wads(record: Mapping[str, Any], wad_columns: tuple[str, ...]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    wads: dict[str, str | None] = {}
    for key in record.keys():  # asyncpg Records iterate values, so ask for the keys
        value = record[key]
        if key in wad_columns:
            out[key] = wad_to_str(value)
            wads[key] = _raw(value)
        else:
            out[key] = _plain(value)
    out["wad"] = wads
    return out


Derived = Callable[[Mapping[str, Any]], Any]


@dataclass(frozen=True)
class Shape:
    """How a kind of row is shown: its WAD columns (as decimals, raw under "wad"), the other
    columns as plain JSON values, plus fields derived from the row."""

    wad_columns: tuple[str, ...]
    derived: Mapping[str, Derived]

    def format(self, record: Mapping[str, Any]) -> dict[str, Any]:
        out = _with_wads(record, self.wad_columns)
        for key, fn in self.derived.items():
            out[key] = fn(record)
        return out

    def __post_init__(self) -> None:
        object.__setattr__(self, "_wads", frozenset(self.wad_columns))

    def field(self, record: Mapping[str, Any], key: str) -> Any:
        """One field of `format(record)`, computed alone ("wad" excepted)."""
        fn = self.derived.get(key)
        if fn is not None:
            return fn(record)
        if key in self._wads:  # type: ignore[attr-defined]
            return wad_to_str(record[key])
        return _plain(record[key])

    def raw(self, record: Mapping[str, Any], key: str) -> str | None:
        """One field of `format(record)["wad"]`."""
        if key not in self._wads:  # type: ignore[attr-defined]
            raise KeyError(key)
        return _raw(record[key])


def _time_of(column: str) -> Derived:
    return lambda r: iso_time(r.get(column))


def _pct_of(column: str) -> Derived:
    return lambda r: wad_to_percent(r.get(column))


POSITION = Shape(
    POSITION_WAD_COLUMNS,
    {
        "side": lambda r: "long" if r["is_long"] else "short",
        "opened_at": _time_of("opened_timestamp"),
        "closed_at": _time_of("closed_timestamp"),
    },
)
LIQUIDATION = Shape(LIQUIDATION_WAD_COLUMNS, {"time": _time_of("block_timestamp")})
FUNDING = Shape(
    FUNDING_WAD_COLUMNS,
    {"funding_rate_pct": _pct_of("funding_rate"), "time": _time_of("funding_timestamp")},
)
MARKET = Shape(
    MARKET_WAD_COLUMNS,
    {
        "funding_rate_pct": _pct_of("funding_rate"),
        "last_funding_at": _time_of("last_funding_time"),
        "last_liquidation_at": _time_of("last_liquidation_timestamp"),
    },
)


def format_position(record: Mapping[str, Any]) -> dict[str, Any]:
    return POSITION.format(record)


def format_liquidation(record: Mapping[str, Any]) -> dict[str, Any]:
    return LIQUIDATION.format(record)


def format_funding(record: Mapping[str, Any]) -> dict[str, Any]:
    return FUNDING.format(record)


def format_market(record: Mapping[str, Any]) -> dict[str, Any]:
    return MARKET.format(record)


def format_sync(record: Mapping[str, Any]) -> dict[str, Any]:
    """A sync_status row (shared.readmodel.queries.SYNC_STATUS_SQL)."""
    updated = record["updated_at"]
    return {
        "contract_address": record["contract_address"],
        "last_synced_block": record["last_synced_block"],
        "last_synced_hash": record["last_synced_hash"],
        "updated_at": updated.isoformat() if updated else None,
        "seconds_since_update": record["seconds_since_update"],
    }


def format_position_event(record: Mapping[str, Any]) -> dict[str, Any]:
    """A row of the `events` table (queries.POSITION_EVENTS_SQL) as the position's event list
    shows it."""
    raw = record["args"]
    args = json.loads(raw) if isinstance(raw, str) else dict(raw)
    return {
        "name": record["name"],
        "block_number": record["block_number"],
        "block_timestamp": record["block_timestamp"],
        "time": iso_time(record["block_timestamp"]),
        "tx_hash": record["tx_hash"],
        "log_index": record["log_index"],
        "args": args,
        "display": format_event_args(record["name"], args),
    }


def format_event_args(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """Event arguments for display: WAD integers as decimal strings, the rest unchanged."""
    wad_names = WAD_ARGS.get(name, frozenset())
    out: dict[str, Any] = {}
    for key, value in args.items():
        if key in wad_names:
            try:
                out[key] = wad_to_str(value)
            except (TypeError, ValueError):
                out[key] = value
        else:
            out[key] = value
    return out
