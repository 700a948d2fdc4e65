"""The indexer's tables, as one definition for the indexer that writes them and the services that
read them (keeper, dashboard). The schema itself is the indexer's migrations
(services/indexer/migrations); this module names its tables and, for the tables the indexer
fills from the events, their columns: a row class per table whose fields are the columns in
table order. Field metadata marks the numeric(78,0) columns (asyncpg returns them as Decimal)
and among them the WAD amounts (18-decimal fixed point).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from typing import Any

MARKETS = "markets"
POSITIONS = "positions"
LIQUIDATIONS = "liquidations"
FUNDING_UPDATES = "funding_updates"
EVENTS = "events"
SYNC_STATUS = "sync_status"
# what a reader of the indexer's database needs to SELECT from
READ_TABLES = (MARKETS, POSITIONS, LIQUIDATIONS, FUNDING_UPDATES, EVENTS, SYNC_STATUS)

# positions.status
OPEN, CLOSED, LIQUIDATED = "open", "closed", "liquidated"


# field metadata: a column of WAD amounts (numeric(78,0), 18 decimals), or of plain numeric(78,0)
# integers (a token id)
_WAD = {"numeric": True, "wad": True}
_NUMERIC = {"numeric": True}


_COLUMNS: dict[type, tuple[str, ...]] = {}


def columns(row: type) -> tuple[str, ...]:
    """The table's columns, in table order."""
    names = _COLUMNS.get(row)
    if names is None:
        names = _COLUMNS[row] = tuple(f.name for f in fields(row))
    return names


def wad_columns(row: type) -> tuple[str, ...]:
    return tuple(f.name for f in fields(row) if f.metadata.get("wad"))


def numeric_columns(row: type) -> frozenset[str]:
    return frozenset(f.name for f in fields(row) if f.metadata.get("numeric"))


class TableRow:
    __slots__ = ()

    def record(self) -> tuple[Any, ...]:
        """The row's values in column order."""
        return tuple(getattr(self, c) for c in columns(type(self)))


@dataclass(slots=True)
class PositionRow(TableRow):
    token_id: int = field(metadata=_NUMERIC)
    market_id: str
    market: str | None  # the pair, when known
    owner: str
    is_long: bool
    collateral: int = field(metadata=_WAD)  # current (after margin changes and partial closes)
    leverage: int = field(metadata=_WAD)
    size: int = field(metadata=_WAD)
    notional: int = field(metadata=_WAD)
    entry_price: int = field(metadata=_WAD)
    entry_funding_index: int = field(metadata=_WAD)  # its side's index at open / last margin change
    open_fee: int = field(metadata=_WAD)
    status: str  # OPEN, CLOSED or LIQUIDATED
    opened_block: int
    opened_timestamp: int
    opened_tx: str
    closed_block: int | None = None
    closed_timestamp: int | None = None
    closed_tx: str | None = None
    exit_price: int | None = field(default=None, metadata=_WAD)
    realized_pnl: int | None = field(default=None, metadata=_WAD)
    funding_payment: int | None = field(default=None, metadata=_WAD)
    # PositionClosed payout / liquidation owner refund
    payout: int | None = field(default=None, metadata=_WAD)
    updated_block: int = 0  # the block whose state the row reflects
    close_fee: int | None = field(default=None, metadata=_WAD)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> PositionRow:
        values = {}
        for name in POSITION_COLUMNS:
            value = record[name]
            if name in NUMERIC_POSITION_COLUMNS and value is not None:
                value = int(value)
            values[name] = value
        return cls(**values)


POSITION_COLUMNS = columns(PositionRow)
NUMERIC_POSITION_COLUMNS = numeric_columns(PositionRow)


@dataclass(slots=True)
class LiquidationRow(TableRow):
    token_id: int = field(metadata=_NUMERIC)
    market_id: str
    owner: str
    liquidator: str
    tx_hash: str
    log_index: int
    block_number: int
    block_timestamp: int
    price: int = field(metadata=_WAD)
    realized_pnl: int = field(metadata=_WAD)
    reward: int = field(metadata=_WAD)
    owner_refund: int = field(metadata=_WAD)
    bad_debt: int = field(metadata=_WAD)
    size: int = field(metadata=_WAD)  # base size unwound by this call
    remaining_size: int = field(metadata=_WAD)  # left open (0: the position is gone)
    funding_payment: int = field(metadata=_WAD)
    insurance_fee: int = field(
        metadata=_WAD
    )  # the insurance fund's part of the penalty (reward: the keeper's)


LIQUIDATION_COLUMNS = columns(LiquidationRow)


@dataclass(slots=True)
class FundingRow(TableRow):
    market_id: str
    funding_rate: int = field(metadata=_WAD)
    cumulative_funding_index: int = field(metadata=_WAD)
    mark_twap: int = field(metadata=_WAD)
    index_twap: int = field(metadata=_WAD)
    funding_timestamp: int
    tx_hash: str
    log_index: int
    block_number: int
    block_timestamp: int
    funding_per_second: int = field(metadata=_WAD)
    cumulative_funding_short: int = field(metadata=_WAD)  # cumulative_funding_index is the longs'


FUNDING_COLUMNS = columns(FundingRow)


@dataclass(slots=True)
class MarketState(TableRow):
    market_id: str
    pair: str | None = None
    vamm: str | None = None
    oracle_feed: str | None = None
    cumulative_funding_index: int = field(
        default=0, metadata=_WAD
    )  # the longs', at the last FundingRateUpdated
    funding_rate: int = field(default=0, metadata=_WAD)
    last_funding_time: int | None = None  # its `timestamp` argument
    paused: bool = False
    added_block: int | None = None  # MarketAdded block (None: from the configuration)
    updated_block: int | None = None
    funding_per_second: int = field(default=0, metadata=_WAD)
    cumulative_funding_short: int = field(
        default=0, metadata=_WAD
    )  # cumulative_funding_index is the longs'


MARKET_COLUMNS = columns(MarketState)

# `events`: every decoded event, exactly once (args: jsonb, integers as decimal strings)
EVENT_COLUMNS = (
    "chain_id",
    "tx_hash",
    "log_index",
    "block_number",
    "block_hash",
    "block_timestamp",
    "contract",
    "name",
    "token_id",
    "market_id",
    "args",
    "funding_index_at",
)
