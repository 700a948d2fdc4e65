"""Pure formatting of live events (Kafka envelopes) for the /ws feed and GraphQL
subscriptions: the formatted event and its one-line human summary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.dashboard.formatting import (
    format_event_args,
    iso_time,
    to_int,
    wad_to_percent,
    wad_to_str,
)
from shared.events.names import EventName
from shared.events.schema import EventEnvelope


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
    if name == EventName.PositionOpened:
        side = "long" if args.get("isLong") else "short"
        return (
            f"{side} {_num(args.get('size'))} {where} @ {_num(args.get('entryPrice'), 2)}"
            f" ({_num(args.get('leverage'), 2)}x, collateral {_num(args.get('collateral'), 2)})"
        )
    if name == EventName.PositionClosed:
        return (
            f"closed on {where} @ {_num(args.get('exitPrice'), 2)},"
            f" pnl {_num(args.get('realizedPnl'), 2)}, payout {_num(args.get('payout'), 2)}"
        )
    if name == EventName.PositionLiquidated:
        part = ""
        if to_int_or_none(args.get("remainingSize")):
            part = f" (partly: {_num(args.get('remainingSize'))} left)"
        return (
            f"liquidated{part} on {where} @ {_num(args.get('price'), 2)} by"
            f" {_short(args.get('liquidator'))}, reward {_num(args.get('liquidatorReward'), 4)}"
        )
    if name == EventName.PositionDecreased:
        return (
            f"partly closed on {where}: {_num(args.get('size'))} @ {_num(args.get('exitPrice'), 2)},"
            f" pnl {_num(args.get('realizedPnl'), 2)}, payout {_num(args.get('payout'), 2)}"
        )
    if name == EventName.PositionReduced:
        return (
            f"position on {where} now {_num(args.get('size'))},"
            f" collateral {_num(args.get('collateral'), 2)}"
        )
    if name == EventName.MarginChanged:
        return (
            f"margin {_num(args.get('delta'), 2)} on {where},"
            f" collateral now {_num(args.get('newCollateral'), 2)}"
        )
    if name == EventName.FundingRateUpdated:
        try:
            rate = wad_to_percent(args.get("fundingRate"), 6) or "?"
        except (TypeError, ValueError):
            rate = "?"
        return f"funding rate {rate}% on {where}"
    if name == EventName.PositionMinted:
        return f"position NFT minted to {_short(args.get('owner'))} on {where}"
    if name == EventName.PositionBurned:
        return f"position NFT burned on {where}"
    if name == EventName.MarketAdded:
        return f"market {args.get('pair', where)} added"
    if name == EventName.MarketPaused:
        return f"market {where} {'paused' if args.get('paused') else 'unpaused'}"
    return _governance_summary(name, where, args) or name


def _governance_summary(name: str, where: str, args: Mapping[str, Any]) -> str | None:
    pid = str(args.get("proposalId", "?"))
    pid = pid if len(pid) <= 12 else f"{pid[:6]}…{pid[-4:]}"
    if name == EventName.ProposalCreated:
        return f"proposal {pid}: {str(args.get('description', ''))[:80]}"
    if name == EventName.VoteCast:
        code = to_int_or_none(args.get("support"))
        support = {0: "against", 1: "for", 2: "abstain"}.get(code if code is not None else -1)
        return f"vote {support or '?'} proposal {pid}, weight {_num(args.get('weight'), 2)}"
    if name in (EventName.ProposalQueued, EventName.ProposalExecuted, EventName.ProposalCanceled):
        return f"proposal {pid} {name.removeprefix('Proposal').lower()}"
    if name == EventName.RiskParamsUpdated:
        return (
            f"{where}: max leverage {_num(args.get('maxLeverage'), 2)}x, maintenance"
            f" {wad_to_percent(to_int_or_none(args.get('maintenanceMarginRatio')), 4)}%"
        )
    if name in (
        EventName.SafetyParamsUpdated,
        EventName.FundingParamsUpdated,
        EventName.ParamChangeScheduled,
    ):
        return f"{where}: {name.removesuffix('Updated')}"
    if name in (EventName.FundingRewardSet, EventName.GuardianSet, EventName.ParamChangeDelaySet):
        return name
    return None


def format_event(event: EventEnvelope) -> dict[str, Any]:
    """A Kafka envelope as the page's live feed shows it (the raw args are kept too)."""
    market = event.market or (
        event.args.get("pair") if event.name == EventName.MarketAdded else None
    )
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
