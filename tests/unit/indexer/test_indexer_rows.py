from __future__ import annotations

from typing import Any

from services.indexer.decode import DecodedLog, market_id_of
from services.indexer.rows import CLOSED, LIQUIDATED, OPEN, Fold, MarketRow, PositionRow

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


def opened(token: int, block: int, collateral: int = 100, entry_index: int = 0) -> DecodedLog:
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
        entryFundingIndex=entry_index,
    )


def funding(block: int, index: int, speed: int = 0) -> DecodedLog:
    return ev(
        "FundingRateUpdated",
        block,
        None,
        fundingRate=7,
        cumulativeFundingLong=index,
        cumulativeFundingShort=-index,
        markTwap=1,
        indexTwap=2,
        timestamp=5000 + block,
        fundingPerSecond=speed,
    )


def liquidated(token: int, block: int, size: int, remaining: int, **over: Any) -> DecodedLog:
    args: dict[str, Any] = {
        "liquidator": "0x" + "cc" * 20,
        "price": 3,
        "realizedPnl": -9,
        "liquidatorReward": 2,
        "ownerRefund": 0,
        "badDebt": 1,
        "size": size,
        "remainingSize": remaining,
        "fundingPayment": 5,
        "insuranceFee": 2,
    }
    args.update(over)
    return ev("PositionLiquidated", block, token, **args)


def test_open_then_margin_then_close() -> None:
    fold = Fold(pairs={MID: "ETH/USDT"})
    r = fold.apply_all(
        [
            ev("PositionMinted", 1, 1),
            opened(1, 1),
            funding(2, 40, speed=3),
            ev("MarginChanged", 3, 1, delta=50, newCollateral=150, entryFundingIndex=40),
            ev(
                "PositionClosed",
                4,
                1,
                exitPrice=260,
                realizedPnl=-20,
                fundingPayment=4,
                payout=126,
                fee=2,
            ),
            ev("PositionBurned", 4, 1),
        ]
    )
    row = r.positions[1]
    assert row.status == CLOSED and row.market == "ETH/USDT"
    assert row.collateral == 150 and row.entry_funding_index == 40
    assert row.opened_block == 1 and row.opened_timestamp == 1001 and row.closed_block == 4
    assert row.realized_pnl == -20 and row.exit_price == 260 and row.payout == 126
    assert row.close_fee == 2 and row.funding_payment == 4
    assert row.updated_block == 4
    assert r.markets[MID].cumulative_funding_index == 40
    assert r.markets[MID].funding_per_second == 3
    assert r.markets[MID].cumulative_funding_short == -40
    assert r.markets[MID].last_funding_time == 5002
    (f,) = r.funding
    assert f.funding_per_second == 3


def test_entry_funding_index_is_the_events_own() -> None:
    # funding accrues per second: the index a position starts from is in its event, not the
    # market's last checkpoint
    r = Fold().apply_all([opened(1, 1), funding(2, -11, speed=2), opened(2, 3, entry_index=-7)])
    assert r.positions[1].entry_funding_index == 0
    assert r.positions[2].entry_funding_index == -7
    assert r.positions[2].status == OPEN
    assert sorted(r.funding_index_at.values()) == [-7, 0]  # written to events.funding_index_at


def test_full_liquidation_closes_the_position() -> None:
    existing = PositionRow(
        token_id=9,
        market_id=MID,
        market=None,
        owner=OWNER,
        is_long=False,
        collateral=10,
        leverage=1,
        size=4,
        notional=8,
        entry_price=2,
        entry_funding_index=3,
        open_fee=0,
        status=OPEN,
        opened_block=1,
        opened_timestamp=1,
        opened_tx="0x1",
        updated_block=1,
    )
    markets = {MID: MarketRow(MID, "ETH/USDT", cumulative_funding_index=77)}
    r = Fold({9: existing}, markets).apply_all(
        [liquidated(9, 50, size=4, remaining=0), opened(10, 50, entry_index=77)]
    )
    assert r.positions[9].status == LIQUIDATED and r.positions[9].payout == 0
    assert r.positions[9].funding_payment == 5 and r.positions[9].closed_block == 50
    assert r.positions[10].entry_funding_index == 77
    (liq,) = r.liquidations
    assert liq.token_id == 9 and liq.reward == 2 and liq.bad_debt == 1
    assert liq.size == 4 and liq.remaining_size == 0 and liq.insurance_fee == 2
    assert liq.liquidator == "0x" + "cc" * 20


def test_partial_liquidation_keeps_the_position_open_with_its_new_state() -> None:
    r = Fold().apply_all(
        [
            opened(1, 1),
            liquidated(1, 5, size=5 * 10**17, remaining=15 * 10**17),
            ev(
                "PositionReduced",
                5,
                1,
                size=15 * 10**17,
                notional=375,
                collateral=60,
                entryFundingIndex=12,
            ),
        ]
    )
    row = r.positions[1]
    assert row.status == OPEN and row.closed_block is None and row.payout is None
    assert row.size == 15 * 10**17 and row.notional == 375 and row.collateral == 60
    assert row.entry_price == 375 * 10**18 // (15 * 10**17)
    assert row.entry_funding_index == 12 and row.updated_block == 5
    (liq,) = r.liquidations
    assert liq.size == 5 * 10**17 and liq.remaining_size == 15 * 10**17
    # the rest is liquidated later
    r2 = Fold({1: row}).apply_all([liquidated(1, 9, size=15 * 10**17, remaining=0)])
    assert r2.positions[1].status == LIQUIDATED


def test_events_for_unknown_positions_are_orphans() -> None:
    r = Fold().apply_all(
        [ev("MarginChanged", 3, 42, delta=1, newCollateral=2, entryFundingIndex=0)]
    )
    assert not r.positions and len(r.orphans) == 1


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
