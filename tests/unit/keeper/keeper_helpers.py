"""Event envelopes for the keeper's unit tests."""

from __future__ import annotations

from typing import Any

from shared.events.schema import EventEnvelope

WAD = 10**18
ETH = "0x" + "11" * 32
BTC = "0x" + "22" * 32
OWNER = "0x" + "ab" * 20


def env(
    name: str,
    block: int,
    log_index: int = 0,
    *,
    token_id: int | None = None,
    market_id: str | None = ETH,
    args: dict[str, Any] | None = None,
    reverted: bool = False,
    block_hash: str | None = None,
    tx: str | None = None,
) -> EventEnvelope:
    tx_hash = tx or "0x" + f"{block:04x}{log_index:04x}".rjust(64, "0")
    return EventEnvelope(
        event_id=f"31337:{tx_hash}:{log_index}",
        name=name,
        chain_id=31337,
        contract="0x" + "cc" * 20,
        block_number=block,
        block_hash=block_hash or "0x" + f"{block:x}".rjust(64, "0"),
        block_timestamp=1_700_000_000 + block,
        tx_hash=tx_hash,
        log_index=log_index,
        market_id=market_id,
        token_id=token_id,
        args={
            k: (str(v) if isinstance(v, int) and not isinstance(v, bool) else v)
            for k, v in (args or {}).items()
        },
        reverted=reverted,
    )


def opened(
    token: int,
    block: int,
    log_index: int = 1,
    *,
    market: str = ETH,
    is_long: bool = True,
    collateral: int = 1_000 * WAD,
    leverage: int = 10 * WAD,
    price: int = 2_000 * WAD,
    entry_funding: int = 0,
) -> EventEnvelope:
    notional = collateral * leverage // WAD
    size = notional * WAD // price
    return env(
        "PositionOpened",
        block,
        log_index,
        token_id=token,
        market_id=market,
        args={
            "tokenId": token,
            "owner": OWNER,
            "marketId": market,
            "isLong": is_long,
            "collateral": collateral,
            "leverage": leverage,
            "size": size,
            "notional": notional,
            "entryPrice": notional * WAD // size,
            "fee": 0,
            "entryFundingIndex": entry_funding,
        },
    )


def margin_changed(
    token: int, block: int, new_collateral: int, log_index: int = 0, entry_funding: int = 0
) -> EventEnvelope:
    return env(
        "MarginChanged",
        block,
        log_index,
        token_id=token,
        args={
            "tokenId": token,
            "owner": OWNER,
            "marketId": ETH,
            "delta": 1,
            "newCollateral": new_collateral,
            "entryFundingIndex": entry_funding,
        },
    )


def funding(block: int, cumulative: int, market: str = ETH, log_index: int = 0) -> EventEnvelope:
    return env(
        "FundingRateUpdated",
        block,
        log_index,
        market_id=market,
        args={
            "marketId": market,
            "fundingRate": 1,
            "cumulativeFundingLong": cumulative,
            "cumulativeFundingShort": -cumulative,
            "markTwap": 1,
            "indexTwap": 1,
            "timestamp": 1,
            "fundingPerSecond": 0,
        },
    )


def closed(
    token: int, block: int, name: str = "PositionClosed", log_index: int = 2, remaining: int = 0
) -> EventEnvelope:
    args: dict[str, Any] = {"tokenId": token, "owner": OWNER, "marketId": ETH}
    if name == "PositionLiquidated":
        args["remainingSize"] = remaining
    return env(name, block, log_index, token_id=token, args=args)


def reduced(
    token: int,
    block: int,
    size: int,
    notional: int,
    collateral: int,
    entry_funding: int,
    log_index: int = 3,
) -> EventEnvelope:
    return env(
        "PositionReduced",
        block,
        log_index,
        token_id=token,
        args={
            "tokenId": token,
            "owner": OWNER,
            "marketId": ETH,
            "size": size,
            "notional": notional,
            "collateral": collateral,
            "entryFundingIndex": entry_funding,
        },
    )
