from __future__ import annotations

from typing import Any

from services.indexer.decode import DecodedLog, market_id_of
from services.indexer.rows import CLOSED, LIQUIDATED, OPEN, Fold, MarketState, PositionRow

MID = market_id_of("ETH/USDT")
OWNER = "0x" + "ab" * 20
_log_index = iter(range(10_000))


def ev(
    name: str, block: int, token: int | None = None, market: str = MID, **args: Any
) -> DecodedLog:
    full = dict(args)
    if token is not None:
        full = {"tokenId": token, "owner": OWNER, "marketId": market, **args}
    else:
        full = {"marketId": market, **args}
    return DecodedLog(
        name=name,
        contract="0xpm",
        block_number=block,
        block_hash=f"0x{block:064x}",
        block_timestamp=1000 + block,
        tx_hash=f"0x{block:064x}",
        log_index=next(_log_index),
        args=full,
        token_id=token,
        market_id=market,
    )


def opened(token: int, block: int, collateral: int = 100) -> DecodedLog:
    return ev(
        "PositionOpened",
        block,
        token,
        isLong=True,
        collateral=collateral,
        leverage=5 * 10**18,
        size=2 * 10**18,
        notional=500,
        entryPrice=250,
        fee=3,
    )


def funding(block: int, index: int) -> DecodedLog:
    return ev(
        "FundingRateUpdated",
        block,
        None,
        fundingRate=7,
        cumulativeFundingIndex=index,
        markTwap=1,
        indexTwap=2,
        timestamp=5000 + block,
    )


def test_open_then_margin_then_close() -> None:
    fold = Fold(pairs={MID: "ETH/USDT"})
    r = fold.apply_all(
        [
            ev("PositionMinted", 1, 1),
            opened(1, 1),
            funding(2, 40),
            ev("MarginChanged", 3, 1, delta=50, newCollateral=150),
            ev(
                "PositionClosed", 4, 1, exitPrice=260, realizedPnl=-20, fundingPayment=4, payout=126
            ),
            ev("PositionBurned", 4, 1),
        ]
    )
    row = r.positions[1]
    assert row.status == CLOSED and row.market == "ETH/USDT"
    assert row.collateral == 150 and row.entry_funding_index == 40
    assert row.opened_block == 1 and row.opened_timestamp == 1001 and row.closed_block == 4
    assert row.realized_pnl == -20 and row.exit_price == 260 and row.payout == 126
    assert row.updated_block == 4
    assert r.markets[MID].cumulative_funding_index == 40
    assert r.markets[MID].last_funding_time == 5002
    assert len(r.funding) == 1


def test_entry_funding_index_from_latest_update_zero_before_any() -> None:
    r = Fold().apply_all([opened(1, 1), funding(2, -11), opened(2, 3), funding(4, 25)])
    assert r.positions[1].entry_funding_index == 0
    assert r.positions[2].entry_funding_index == -11
    assert r.positions[2].status == OPEN


def test_existing_market_index_and_position_are_continued() -> None:
    existing = PositionRow(
        token_id=9,
        market_id=MID,
        market=None,
        owner=OWNER,
        is_long=False,
        collateral=10,
        leverage=1,
        size=1,
        notional=1,
        entry_price=1,
        entry_funding_index=3,
        open_fee=0,
        status=OPEN,
        opened_block=1,
        opened_timestamp=1,
        opened_tx="0x1",
        updated_block=1,
    )
    markets = {MID: MarketState(MID, "ETH/USDT", cumulative_funding_index=77)}
    r = Fold({9: existing}, markets).apply_all(
        [
            ev(
                "PositionLiquidated",
                50,
                9,
                liquidator="0x" + "cc" * 20,
                price=3,
                realizedPnl=-9,
                liquidatorReward=2,
                ownerRefund=0,
                badDebt=1,
            ),
            opened(10, 50),
        ]
    )
    assert r.positions[9].status == LIQUIDATED and r.positions[9].payout == 0
    assert r.positions[10].entry_funding_index == 77
    (liq,) = r.liquidations
    assert liq.token_id == 9 and liq.reward == 2 and liq.bad_debt == 1
    assert liq.liquidator == "0x" + "cc" * 20


def test_events_for_unknown_positions_are_orphans() -> None:
    r = Fold().apply_all([ev("MarginChanged", 3, 42, delta=1, newCollateral=2)])
    assert not r.positions and len(r.orphans) == 1


def test_replay_uses_recorded_funding_index() -> None:
    o = opened(1, 1)
    r = Fold().apply_all([o], {o.position: 123})
    assert r.positions[1].entry_funding_index == 123


def test_market_added_and_paused() -> None:
    r = Fold().apply_all(
        [
            ev("MarketAdded", 1, None, pair="BTC/USDT", vamm="0xv", oracleFeed="0xf"),
            ev("MarketPaused", 2, None, paused=True),
            opened(1, 3),
        ]
    )
    m = r.markets[MID]
    assert m.pair == "BTC/USDT" and m.paused and m.added_block == 1
    assert r.positions[1].market == "BTC/USDT"
    # addMarket starts the first funding window at its block's time (lastFundingTime)
    assert m.last_funding_time == 1001 and m.cumulative_funding_index == 0


def test_row_record_roundtrip() -> None:
    r = Fold().apply_all([opened(1, 1)])
    row = r.positions[1]
    record = dict(zip(row.__slots__, row.record(), strict=True))
    assert PositionRow.from_record(record) == row
