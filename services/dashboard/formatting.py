"""Pure formatting: database rows and Kafka envelopes -> JSON-ready dicts for the API and /ws.

Every price, amount, leverage and rate on chain is an 18-decimal fixed-point integer (WAD). The
API shows them as exact decimal strings ("1234.5", never floats, so nothing is rounded away)
and keeps the raw integers, as decimal strings, under "wad".
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from shared.events.schema import EventEnvelope

WAD = 10**18

# Integer event arguments that are WAD fixed-point numbers, per event. Anything else that is an
# integer (tokenId, timestamp) is shown as is.
WAD_ARGS: dict[str, frozenset[str]] = {
    "PositionOpened": frozenset(
        {"collateral", "leverage", "size", "notional", "entryPrice", "fee", "entryFundingIndex"}
    ),
    "PositionClosed": frozenset({"exitPrice", "realizedPnl", "fundingPayment", "payout", "fee"}),
    "PositionLiquidated": frozenset(
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
    "PositionReduced": frozenset({"size", "notional", "collateral", "entryFundingIndex"}),
    "PositionDecreased": frozenset(
        {"size", "exitPrice", "realizedPnl", "fundingPayment", "payout", "fee"}
    ),
    "MarginChanged": frozenset({"delta", "newCollateral", "entryFundingIndex"}),
    "FundingRateUpdated": frozenset(
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

POSITION_WAD_COLUMNS = (
    "collateral",
    "leverage",
    "size",
    "notional",
    "entry_price",
    "entry_funding_index",
    "open_fee",
    "exit_price",
    "realized_pnl",
    "funding_payment",
    "payout",
    "close_fee",
)
LIQUIDATION_WAD_COLUMNS = (
    "price",
    "realized_pnl",
    "reward",
    "owner_refund",
    "bad_debt",
    "size",
    "remaining_size",
    "funding_payment",
    "insurance_fee",
)
FUNDING_WAD_COLUMNS = (
    "funding_rate",
    "cumulative_funding_index",
    "cumulative_funding_short",
    "mark_twap",
    "index_twap",
    "funding_per_second",
)
MARKET_WAD_COLUMNS = (
    "open_interest_long",
    "open_interest_short",
    "open_size_long",
    "open_size_short",
    "open_collateral",
    "liquidation_rewards",
    "bad_debt",
    "funding_rate",
    "cumulative_funding_index",
    "cumulative_funding_short",
    "funding_per_second",
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


def format_position(record: Mapping[str, Any]) -> dict[str, Any]:
    out = _with_wads(record, POSITION_WAD_COLUMNS)
    out["side"] = "long" if record["is_long"] else "short"
    out["opened_at"] = iso_time(record.get("opened_timestamp"))
    out["closed_at"] = iso_time(record.get("closed_timestamp"))
    return out


def format_liquidation(record: Mapping[str, Any]) -> dict[str, Any]:
    out = _with_wads(record, LIQUIDATION_WAD_COLUMNS)
    out["time"] = iso_time(record.get("block_timestamp"))
    return out


def format_funding(record: Mapping[str, Any]) -> dict[str, Any]:
    out = _with_wads(record, FUNDING_WAD_COLUMNS)
    out["funding_rate_pct"] = wad_to_percent(record.get("funding_rate"))
    out["time"] = iso_time(record.get("funding_timestamp"))
    return out


def format_market(record: Mapping[str, Any]) -> dict[str, Any]:
    out = _with_wads(record, MARKET_WAD_COLUMNS)
    out["funding_rate_pct"] = wad_to_percent(record.get("funding_rate"))
    out["last_funding_at"] = iso_time(record.get("last_funding_time"))
    out["last_liquidation_at"] = iso_time(record.get("last_liquidation_timestamp"))
    return out


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


def _short(address: Any) -> str:
    text = str(address or "?")
    return f"{text[:6]}…{text[-4:]}" if len(text) > 12 else text


def _num(value: Any, places: int = 4) -> str:
    """Display number: WAD string truncated to `places` fraction digits; '?' when unreadable."""
    try:
        return wad_to_str(value, places) or "?"
    except (TypeError, ValueError):
        return "?"


def to_int_or_none(value: Any) -> int | None:
    try:
        return to_int(value)
    except (TypeError, ValueError):
        return None


def event_summary(name: str, market: str | None, args: Mapping[str, Any]) -> str:
    """One human line for the live feed, e.g. "long 2.5 ETH/USDT @ 2000 (5x)"."""
    where = market or "?"
    if name == "PositionOpened":
        side = "long" if args.get("isLong") else "short"
        return (
            f"{side} {_num(args.get('size'))} {where} @ {_num(args.get('entryPrice'), 2)}"
            f" ({_num(args.get('leverage'), 2)}x, collateral {_num(args.get('collateral'), 2)})"
        )
    if name == "PositionClosed":
        return (
            f"closed on {where} @ {_num(args.get('exitPrice'), 2)},"
            f" pnl {_num(args.get('realizedPnl'), 2)}, payout {_num(args.get('payout'), 2)}"
        )
    if name == "PositionLiquidated":
        part = ""
        if to_int_or_none(args.get("remainingSize")):
            part = f" (partly: {_num(args.get('remainingSize'))} left)"
        return (
            f"liquidated{part} on {where} @ {_num(args.get('price'), 2)} by"
            f" {_short(args.get('liquidator'))}, reward {_num(args.get('liquidatorReward'), 4)}"
        )
    if name == "PositionDecreased":
        return (
            f"partly closed on {where}: {_num(args.get('size'))} @ {_num(args.get('exitPrice'), 2)},"
            f" pnl {_num(args.get('realizedPnl'), 2)}, payout {_num(args.get('payout'), 2)}"
        )
    if name == "PositionReduced":
        return (
            f"position on {where} now {_num(args.get('size'))},"
            f" collateral {_num(args.get('collateral'), 2)}"
        )
    if name == "MarginChanged":
        return (
            f"margin {_num(args.get('delta'), 2)} on {where},"
            f" collateral now {_num(args.get('newCollateral'), 2)}"
        )
    if name == "FundingRateUpdated":
        try:
            rate = wad_to_percent(args.get("fundingRate"), 6) or "?"
        except (TypeError, ValueError):
            rate = "?"
        return f"funding rate {rate}% on {where}"
    if name == "PositionMinted":
        return f"position NFT minted to {_short(args.get('owner'))} on {where}"
    if name == "PositionBurned":
        return f"position NFT burned on {where}"
    if name == "MarketAdded":
        return f"market {args.get('pair', where)} added"
    if name == "MarketPaused":
        return f"market {where} {'paused' if args.get('paused') else 'unpaused'}"
    return name


def format_event(event: EventEnvelope) -> dict[str, Any]:
    """A Kafka envelope as the page's live feed shows it (the raw args are kept too)."""
    market = event.market or (event.args.get("pair") if event.name == "MarketAdded" else None)
    return {
        "event_id": event.event_id,
        "name": event.name,
        "market": market,
        "market_id": event.market_id,
        "token_id": event.token_id,
        "block_number": event.block_number,
        "block_hash": event.block_hash,
        "block_timestamp": event.block_timestamp,
        "time": iso_time(event.block_timestamp),
        "tx_hash": event.tx_hash,
        "log_index": event.log_index,
        "reverted": event.reverted,
        "args": dict(event.args),
        "display": format_event_args(event.name, event.args),
        "summary": event_summary(event.name, market, event.args),
    }
