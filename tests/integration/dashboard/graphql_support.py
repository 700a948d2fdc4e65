"""Helpers for the GraphQL tests: a client call, and GraphQL answers in the REST API's shape
(camelCase keys -> snake_case, enum names -> the REST API's lower-case strings)."""

from __future__ import annotations

import re
from typing import Any

import httpx

POSITION_FIELDS = """
  tokenId marketId market owner isLong side status collateral leverage size notional
  entryPrice entryFundingIndex openFee openedBlock openedTimestamp openedAt openedTx
  closedBlock closedTimestamp closedAt closedTx exitPrice realizedPnl fundingPayment payout
  closeFee updatedBlock
  wad { collateral leverage size notional entryPrice entryFundingIndex openFee exitPrice
        realizedPnl fundingPayment payout closeFee }
"""
MARKET_FIELDS = """
  marketId pair paused openPositions closedPositions liquidatedPositions openInterestLong
  openInterestShort openSizeLong openSizeShort openCollateral liquidations liquidationRewards
  badDebt lastLiquidationTimestamp lastLiquidationAt fundingRate fundingRatePct
  cumulativeFundingIndex cumulativeFundingShort fundingPerSecond lastFundingTime lastFundingAt
  wad { openInterestLong openInterestShort openSizeLong openSizeShort openCollateral
        liquidationRewards badDebt fundingRate cumulativeFundingIndex cumulativeFundingShort
        fundingPerSecond }
"""
LIQUIDATION_FIELDS = """
  tokenId marketId market owner liquidator txHash logIndex blockNumber blockTimestamp time
  price realizedPnl reward ownerRefund badDebt size remainingSize fundingPayment insuranceFee
  wad { price realizedPnl reward ownerRefund badDebt size remainingSize fundingPayment
        insuranceFee }
"""
FUNDING_FIELDS = """
  marketId market fundingRate fundingRatePct cumulativeFundingIndex cumulativeFundingShort
  fundingPerSecond markTwap indexTwap fundingTimestamp time txHash logIndex blockNumber
  blockTimestamp
  wad { fundingRate cumulativeFundingIndex cumulativeFundingShort markTwap indexTwap
        fundingPerSecond }
"""
ENUM_FIELDS = {"side", "status"}
JSON_FIELDS = {"args", "display"}  # JSON scalars: their keys are the event's, kept as they are


async def gql(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    response = await client.post("/graphql", json={"query": query, "variables": variables or {}})
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


async def data(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    body = await gql(client, query, variables)
    assert not body.get("errors"), body["errors"]
    return body["data"]  # type: ignore[no-any-return]


async def error(
    client: httpx.AsyncClient, query: str, variables: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The one error of a refused operation."""
    body = await gql(client, query, variables)
    assert body.get("errors"), body
    assert len(body["errors"]) == 1, body["errors"]
    return body["errors"][0]  # type: ignore[no-any-return]


def snake(value: Any, key: str | None = None) -> Any:
    if key in JSON_FIELDS:
        return value
    if isinstance(value, dict):
        return {re.sub(r"(?<!^)([A-Z])", r"_\1", k).lower(): snake(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [snake(v) for v in value]
    if key in ENUM_FIELDS and isinstance(value, str):
        return value.lower()
    return value
