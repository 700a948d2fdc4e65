"""GraphQL object, input and enum types.

The objects resolved at run time are the very dicts the REST API returns
(services.dashboard.formatting: `format_position`, `format_market`, ...); the schema's
default resolver reads their keys (snake_case in Python, camelCase in GraphQL). So a field here
is the REST field of the same name, with the same value.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

import strawberry
from strawberry.scalars import JSON

from services.dashboard.graphql.rows import Row
from services.dashboard.graphql.scalars import Amount, BigInt, Wad

T = TypeVar("T")


def default_resolver(obj: Any, name: str) -> Any:
    kind = type(obj)
    if kind is Row:  # the common case, without the attribute-lookup detour
        return obj.field(name)
    return obj[name] if kind is dict else getattr(obj, name)


@strawberry.enum(description="Where a position stands.")
class PositionStatus(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"
    LIQUIDATED = "liquidated"


@strawberry.enum
class Side(enum.Enum):
    LONG = "long"
    SHORT = "short"


@strawberry.enum(description="Sort key of `positions`; the token id breaks ties.")
class PositionOrderBy(enum.Enum):
    OPENED = "opened"
    CLOSED = "closed"
    NOTIONAL = "notional"
    SIZE = "size"
    COLLATERAL = "collateral"
    TOKEN_ID = "token_id"


@strawberry.enum
class Direction(enum.Enum):
    ASC = "asc"
    DESC = "desc"


# ---------------------------------------------------------------- positions
@strawberry.type(description="Raw on-chain integers of a position's WAD fields.")
class PositionWad:
    collateral: Wad
    leverage: Wad
    size: Wad
    notional: Wad
    entry_price: Wad
    entry_funding_index: Wad
    open_fee: Wad
    exit_price: Wad | None
    realized_pnl: Wad | None
    funding_payment: Wad | None
    payout: Wad | None
    close_fee: Wad | None


@strawberry.type(description="An event of one position, from the indexer's `events` table.")
class PositionEvent:
    name: str
    block_number: BigInt
    block_timestamp: BigInt
    time: str | None
    tx_hash: str
    log_index: int
    args: JSON = strawberry.field(description="As emitted; integers as decimal strings.")
    display: JSON = strawberry.field(description="`args` with WAD values as decimals.")


@strawberry.type(description="A position (one NFT), as the indexer folded its events.")
class Position:
    token_id: BigInt
    market_id: str
    market: str | None = strawberry.field(description="The pair, e.g. ETH/USDT, when known.")
    owner: str
    is_long: bool
    side: Side
    status: PositionStatus
    collateral: Amount = strawberry.field(description="Current (after margin changes).")
    leverage: Amount
    size: Amount = strawberry.field(description="Current size in base units.")
    notional: Amount
    entry_price: Amount
    entry_funding_index: Amount
    open_fee: Amount
    opened_block: BigInt
    opened_timestamp: BigInt
    opened_at: str | None = strawberry.field(description="ISO 8601 UTC.")
    opened_tx: str
    closed_block: BigInt | None
    closed_timestamp: BigInt | None
    closed_at: str | None
    closed_tx: str | None
    exit_price: Amount | None
    realized_pnl: Amount | None
    funding_payment: Amount | None
    payout: Amount | None
    close_fee: Amount | None
    updated_block: BigInt
    wad: PositionWad

    @strawberry.field(description="The position's events in chain order.")
    async def events(self, info: strawberry.Info) -> list[PositionEvent]:
        token = default_resolver(self, "token_id")
        return await info.context.events_of(int(token))  # type: ignore[no-any-return]


@strawberry.type
class PageInfo:
    has_next_page: bool
    end_cursor: str | None = strawberry.field(
        description="Pass as `after` for the next page (null when the page is empty)."
    )


@strawberry.type
class Edge(Generic[T]):
    cursor: str
    node: T


@strawberry.type(description="A page of rows, in the order asked for (keyset pagination).")
class Connection(Generic[T]):
    edges: list[Edge[T]]
    nodes: list[T]
    page_info: PageInfo
    count: strawberry.Private[Callable[[], Awaitable[int]]]

    @strawberry.field(
        description="Rows matching the filters, whatever the page (same snapshot as the page)."
    )
    async def total_count(self) -> int:
        return await self.count()


@strawberry.type
class LiquidationWad:
    price: Wad
    realized_pnl: Wad
    reward: Wad
    owner_refund: Wad
    bad_debt: Wad
    size: Wad
    remaining_size: Wad
    funding_payment: Wad
    insurance_fee: Wad


@strawberry.type(description="One liquidation call (partial ones included).")
class Liquidation:
    token_id: BigInt
    market_id: str
    market: str | None
    owner: str
    liquidator: str
    tx_hash: str
    log_index: int
    block_number: BigInt
    block_timestamp: BigInt
    time: str | None
    price: Amount
    realized_pnl: Amount
    reward: Amount
    owner_refund: Amount
    bad_debt: Amount
    size: Amount = strawberry.field(description="Size this call unwound.")
    remaining_size: Amount = strawberry.field(description="Size left open (0: fully closed).")
    funding_payment: Amount
    insurance_fee: Amount
    wad: LiquidationWad


@strawberry.type
class FundingWad:
    funding_rate: Wad
    cumulative_funding_index: Wad
    cumulative_funding_short: Wad
    mark_twap: Wad
    index_twap: Wad
    funding_per_second: Wad


@strawberry.type(description="A FundingRateUpdated event.")
class FundingUpdate:
    market_id: str
    market: str | None
    funding_rate: Amount
    funding_rate_pct: str | None = strawberry.field(description="The rate in percent.")
    cumulative_funding_index: Amount = strawberry.field(description="The longs' index.")
    cumulative_funding_short: Amount = strawberry.field(description="The shorts' index.")
    funding_per_second: Amount
    mark_twap: Amount
    index_twap: Amount
    funding_timestamp: BigInt
    time: str | None
    tx_hash: str
    log_index: int
    block_number: BigInt
    block_timestamp: BigInt
    wad: FundingWad


@strawberry.type
class MarketWad:
    open_interest_long: Wad
    open_interest_short: Wad
    open_size_long: Wad
    open_size_short: Wad
    open_collateral: Wad
    liquidation_rewards: Wad
    bad_debt: Wad
    funding_rate: Wad | None
    cumulative_funding_index: Wad | None
    cumulative_funding_short: Wad | None
    funding_per_second: Wad | None


@strawberry.type(description="A market and its statistics (as GET /api/markets).")
class Market:
    market_id: str
    pair: str | None
    paused: bool
    open_positions: int
    closed_positions: int
    liquidated_positions: int
    open_interest_long: Amount = strawberry.field(description="Open long notional (quote).")
    open_interest_short: Amount
    open_size_long: Amount = strawberry.field(description="Open long size (base).")
    open_size_short: Amount
    open_collateral: Amount
    liquidations: int
    liquidation_rewards: Amount
    bad_debt: Amount
    last_liquidation_timestamp: BigInt | None
    last_liquidation_at: str | None
    funding_rate: Amount | None = strawberry.field(
        description="The last funding update's rate (null before the first one)."
    )
    funding_rate_pct: str | None
    cumulative_funding_index: Amount | None
    cumulative_funding_short: Amount | None
    funding_per_second: Amount | None
    last_funding_time: BigInt | None
    last_funding_at: str | None
    wad: MarketWad


@strawberry.type(description="How far one followed contract is indexed.")
class SyncContract:
    contract_address: str
    last_synced_block: BigInt
    last_synced_hash: str | None
    updated_at: str | None
    seconds_since_update: float | None


@strawberry.type
class SyncStatus:
    indexed_block: BigInt | None = strawberry.field(
        description="The last block every followed contract is indexed to (null: nothing yet)."
    )
    head: BigInt | None = strawberry.field(
        description="The chain's head, when the dashboard asks the node (DASHBOARD_RPC_HEAD)."
    )
    lag_blocks: BigInt | None = strawberry.field(description="head - indexedBlock, when known.")
    seconds_since_update: float | None
    contracts: list[SyncContract]


@strawberry.type(description="A new event from the indexer's Kafka topic.")
class LiveEvent:
    event_id: str
    name: str
    market: str | None
    market_id: str | None
    token_id: BigInt | None
    block_number: BigInt
    block_hash: str
    block_timestamp: BigInt
    time: str | None
    tx_hash: str
    log_index: int
    reverted: bool = strawberry.field(description="A reorg removed it (a compensating event).")
    args: JSON
    display: JSON
    summary: str
    missed_before: int = strawberry.field(
        description="Messages this subscription lost just before this one (it read too slowly)."
    )


# ---------------------------------------------------------------- inputs
@strawberry.input
class PositionFilter:
    status: list[PositionStatus] | None = None
    market: str | None = strawberry.field(default=None, description="Pair or 0x market id.")
    owner: str | None = None
    opened_from: BigInt | None = strawberry.field(default=None, description="Inclusive block.")
    opened_to: BigInt | None = None
    closed_from: BigInt | None = strawberry.field(
        default=None, description="Inclusive block; positions still open are left out."
    )
    closed_to: BigInt | None = None


@strawberry.input
class LiquidationFilter:
    market: str | None = None
    owner: str | None = None
    liquidator: str | None = None
    since: BigInt | None = strawberry.field(default=None, description="Unix seconds, inclusive.")
    until: BigInt | None = None


@strawberry.input
class FundingFilter:
    market: str | None = None
    since: BigInt | None = strawberry.field(
        default=None, description="Unix seconds on the funding timestamp, inclusive."
    )
    until: BigInt | None = None
