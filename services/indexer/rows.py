"""Decoded events -> table rows (shared.readmodel.tables). Pure logic.

`positions` is a fold of each token's events in chain order; a position's
`entry_funding_index` is the one its PositionOpened, MarginChanged or PositionReduced carries
(the contract resets it on each; event schema v2), also written to `events.funding_index_at`.
A liquidation may be partial: PositionLiquidated with a `remainingSize` leaves the position open,
and PositionReduced then gives its new size, notional and collateral. `markets` carries each
market's funding checkpoint (index at the last update and its per-second speed). The same fold
rebuilds positions after a reorg from the events that stayed canonical.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from services.indexer.decode import DecodedLog
from shared.events.names import EventName
from shared.readmodel.tables import (
    CLOSED,
    LIQUIDATED,
    OPEN,
    FundingRow,
    LiquidationRow,
    MarketRow,
    PositionRow,
)

WAD = 10**18
# Events that set a position's entry funding index (their `entryFundingIndex` argument).
FUNDING_RESET_EVENTS = frozenset(
    {EventName.PositionOpened, EventName.MarginChanged, EventName.PositionReduced}
)
# Events that change a position already opened (the fold needs its stored row).
POSITION_FOLLOWUPS = frozenset(
    {
        EventName.MarginChanged,
        EventName.PositionClosed,
        EventName.PositionLiquidated,
        EventName.PositionReduced,
    }
)


@dataclass
class FoldResult:
    positions: dict[int, PositionRow] = field(default_factory=dict)  # touched, final state
    liquidations: list[LiquidationRow] = field(default_factory=list)
    funding: list[FundingRow] = field(default_factory=list)
    markets: dict[str, MarketRow] = field(default_factory=dict)  # touched, final state
    funding_index_at: dict[tuple[int, int], int] = field(default_factory=dict)
    orphans: list[DecodedLog] = field(default_factory=list)  # events for unknown positions


class Fold:
    """Applies decoded events, in chain order, to positions and markets.

    `positions`: current rows of the tokens the events touch that are already stored (tokens
    opened by these events need none). `markets`: current market states (missing: index 0).
    """

    def __init__(
        self,
        positions: Mapping[int, PositionRow] | None = None,
        markets: Mapping[str, MarketRow] | None = None,
        pairs: Mapping[str, str] | None = None,
    ):
        self.result = FoldResult()
        self._positions = dict(positions or {})
        self._markets = dict(markets or {})
        self._pairs = dict(pairs or {})

    def market(self, market_id: str) -> MarketRow:
        state = self._markets.get(market_id)
        if state is None:
            state = MarketRow(market_id=market_id, pair=self._pairs.get(market_id))
            self._markets[market_id] = state
        return state

    def apply_all(self, events: Iterable[DecodedLog]) -> FoldResult:
        for event in events:
            self.apply(event)
        return self.result

    def apply(self, ev: DecodedLog) -> None:
        if ev.name in FUNDING_RESET_EVENTS and ev.market_id is not None:
            self.result.funding_index_at[ev.position] = ev.args["entryFundingIndex"]
        handler = self._handlers.get(ev.name)
        if handler is not None:
            handler(ev)
        # PositionMinted / PositionBurned: the position row follows PositionOpened/Closed/
        # Liquidated of the same transaction; the NFT events only go to `events` and Kafka.

    @functools.cached_property
    def _handlers(self) -> dict[str, Callable[[DecodedLog], None]]:
        """One handler per event that changes a row."""
        return {
            EventName.PositionOpened: self._opened,
            EventName.MarginChanged: self._followup(self._margin_changed),
            EventName.PositionReduced: self._followup(self._reduced),
            EventName.PositionClosed: self._followup(self._closed),
            EventName.PositionLiquidated: self._followup(self._liquidated),
            EventName.FundingRateUpdated: self._funding_updated,
            EventName.MarketAdded: self._market_added,
            EventName.MarketPaused: self._market_paused,
        }

    def _opened(self, ev: DecodedLog) -> None:
        a, market_id = ev.args, ev.market_id
        assert ev.token_id is not None and market_id is not None
        row = PositionRow(
            token_id=ev.token_id,
            market_id=market_id,
            market=self._pair(market_id),
            owner=a["owner"],
            is_long=a["isLong"],
            collateral=a["collateral"],
            leverage=a["leverage"],
            size=a["size"],
            notional=a["notional"],
            entry_price=a["entryPrice"],
            entry_funding_index=self.result.funding_index_at[ev.position],
            open_fee=a["fee"],
            status=OPEN,
            opened_block=ev.block_number,
            opened_timestamp=ev.block_timestamp,
            opened_tx=ev.tx_hash,
            updated_block=ev.block_number,
        )
        self._positions[ev.token_id] = row
        self.result.positions[ev.token_id] = row

    def _followup(
        self, change: Callable[[PositionRow, DecodedLog], None]
    ) -> Callable[[DecodedLog], None]:
        """An event on an open position: its row changed, or an orphan (opened before
        START_BLOCK) when the fold does not know the position."""

        def apply(ev: DecodedLog) -> None:
            row = self._positions.get(ev.token_id) if ev.token_id is not None else None
            if row is None:
                self.result.orphans.append(ev)
                return
            row.updated_block = ev.block_number
            change(row, ev)
            self.result.positions[row.token_id] = row

        return apply

    def _margin_changed(self, row: PositionRow, ev: DecodedLog) -> None:
        row.collateral = ev.args["newCollateral"]
        row.entry_funding_index = ev.args["entryFundingIndex"]

    def _reduced(self, row: PositionRow, ev: DecodedLog) -> None:
        a = ev.args
        row.size = a["size"]
        row.notional = a["notional"]
        row.collateral = a["collateral"]
        row.entry_price = row.notional * WAD // row.size
        row.entry_funding_index = a["entryFundingIndex"]

    def _closed(self, row: PositionRow, ev: DecodedLog) -> None:
        a = ev.args
        self._close(row, ev, CLOSED, a["exitPrice"], a["payout"])
        row.funding_payment = a["fundingPayment"]
        row.close_fee = a["fee"]

    def _liquidated(self, row: PositionRow, ev: DecodedLog) -> None:
        a = ev.args
        self.result.liquidations.append(_liquidation_row(row, ev))
        if a["remainingSize"] == 0:
            self._close(row, ev, LIQUIDATED, a["price"], a["ownerRefund"])
            row.funding_payment = a["fundingPayment"]

    def _funding_updated(self, ev: DecodedLog) -> None:
        a, market_id = ev.args, ev.market_id
        assert market_id is not None
        m = self.market(market_id)
        m.cumulative_funding_index = a["cumulativeFundingLong"]
        m.cumulative_funding_short = a["cumulativeFundingShort"]
        m.funding_rate = a["fundingRate"]
        m.funding_per_second = a["fundingPerSecond"]
        m.last_funding_time = a["timestamp"]
        m.updated_block = ev.block_number
        self.result.markets[market_id] = m
        self.result.funding.append(
            FundingRow(
                market_id=market_id,
                funding_rate=a["fundingRate"],
                cumulative_funding_index=a["cumulativeFundingLong"],
                mark_twap=a["markTwap"],
                index_twap=a["indexTwap"],
                funding_timestamp=a["timestamp"],
                tx_hash=ev.tx_hash,
                log_index=ev.log_index,
                block_number=ev.block_number,
                block_timestamp=ev.block_timestamp,
                funding_per_second=a["fundingPerSecond"],
                cumulative_funding_short=a["cumulativeFundingShort"],
            )
        )

    def _market_added(self, ev: DecodedLog) -> None:
        a, market_id = ev.args, ev.market_id
        assert market_id is not None
        m = self.market(market_id)
        m.pair = a["pair"]
        m.vamm = a["vamm"]
        m.oracle_feed = a["oracleFeed"]
        m.added_block = ev.block_number
        m.updated_block = ev.block_number
        if m.last_funding_time is None:  # addMarket starts the first funding window
            m.last_funding_time = ev.block_timestamp
        self._pairs[market_id] = a["pair"]
        self.result.markets[market_id] = m

    def _market_paused(self, ev: DecodedLog) -> None:
        assert ev.market_id is not None
        m = self.market(ev.market_id)
        m.paused = ev.args["paused"]
        m.updated_block = ev.block_number
        self.result.markets[ev.market_id] = m
        # PositionDecreased (a partial close) too: the PositionReduced after it has the new state.

    @staticmethod
    def _close(row: PositionRow, ev: DecodedLog, status: str, price: int, payout: int) -> None:
        row.status = status
        row.closed_block = ev.block_number
        row.closed_timestamp = ev.block_timestamp
        row.closed_tx = ev.tx_hash
        row.realized_pnl = ev.args["realizedPnl"]
        row.exit_price = price
        row.payout = payout

    def _pair(self, market_id: str) -> str | None:
        pair = self._pairs.get(market_id)
        if pair is None and market_id in self._markets:
            pair = self._markets[market_id].pair
        return pair


def _liquidation_row(row: PositionRow, ev: DecodedLog) -> LiquidationRow:
    a = ev.args
    return LiquidationRow(
        token_id=row.token_id,
        market_id=row.market_id,
        owner=a["owner"],
        liquidator=a["liquidator"],
        tx_hash=ev.tx_hash,
        log_index=ev.log_index,
        block_number=ev.block_number,
        block_timestamp=ev.block_timestamp,
        price=a["price"],
        realized_pnl=a["realizedPnl"],
        reward=a["liquidatorReward"],
        owner_refund=a["ownerRefund"],
        bad_debt=a["badDebt"],
        size=a["size"],
        remaining_size=a["remainingSize"],
        funding_payment=a["fundingPayment"],
        insurance_fee=a["insuranceFee"],
    )
