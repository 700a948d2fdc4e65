"""Candidate ranking: exact math on the pre-selected, most underwater first, cache invalidation."""

from __future__ import annotations

from keeper_helpers import BTC, ETH, WAD, margin_changed, opened

from services.keeper.book import PositionBook
from services.keeper.margin import health
from services.keeper.ranking import Ranker

MMR = WAD * 25 // 1000


def _book() -> PositionBook:
    book = PositionBook()
    book.market(ETH).set_mmr(MMR)
    book.market(BTC).set_mmr(MMR)
    return book


def test_only_positions_within_the_buffer_most_underwater_first() -> None:
    book = _book()
    # 10x longs at 2000 with 1000 collateral: liquidation near 1846
    book.apply(opened(1, 10, leverage=10 * WAD))
    book.apply(opened(2, 10, log_index=2, leverage=15 * WAD))
    book.apply(opened(3, 10, log_index=3, leverage=2 * WAD))
    book.apply(opened(4, 10, log_index=4, is_long=False, leverage=10 * WAD))
    ranker = Ranker(buffer=0.10)
    assert ranker.candidates(book, {ETH: 2_000 * WAD}) == []
    cands = ranker.candidates(book, {ETH: 1_850 * WAD})
    ids = [c.token_id for c in cands]
    assert ids == [2, 1]  # 15x is liquidatable, 10x within 10% of maintenance; 2x and short far
    assert cands[0].liquidatable and not cands[1].liquidatable
    # a short is the one in danger when the price rises
    assert [c.token_id for c in ranker.candidates(book, {ETH: 2_170 * WAD})] == [4]


def test_matches_exact_math_for_every_position() -> None:
    book = _book()
    for i in range(1, 200):
        book.apply(
            opened(
                i,
                10,
                log_index=i,
                is_long=i % 3 != 0,
                leverage=(1 + i % 20) * WAD,
                collateral=(100 + 7 * i) * WAD,
                market=ETH if i % 2 else BTC,
            )
        )
    book.set_cumulative(ETH, 5 * WAD, -4 * WAD)  # the indexes read from the chain
    ranker = Ranker(buffer=0.05)
    for eth, btc in ((1_900, 2_050), (1_800, 2_200), (2_000, 2_000)):
        prices = {ETH: eth * WAD, BTC: btc * WAD}
        got = {c.token_id for c in ranker.candidates(book, prices)}
        want = set()
        for pos in book.positions.values():
            h = health(
                pos.is_long,
                pos.collateral,
                pos.size,
                pos.notional,
                book.entry_funding(pos),
                book.market(pos.market_id).cumulative_for(pos.is_long),
                prices[pos.market_id],
                MMR,
            )
            if h.liquidatable or h.within(ranker.buffer_wad):
                want.add(pos.token_id)
        assert got == want


def test_cached_triggers_follow_position_and_funding_changes() -> None:
    book = _book()
    book.apply(opened(1, 10, leverage=10 * WAD))
    ranker = Ranker(buffer=0.0)
    price = {ETH: 1_860 * WAD}
    assert ranker.candidates(book, price) == []
    book.apply(margin_changed(1, 11, 900 * WAD))  # less collateral
    assert [c.token_id for c in ranker.candidates(book, price)] == [1]
    book.apply(margin_changed(1, 12, 1_000 * WAD))
    assert ranker.candidates(book, price) == []
    # funding accrues every second: the index read from the chain this block says longs owe
    # 30 per unit of base (5 ETH -> 150); the cached trigger must follow it
    book.set_cumulative(ETH, 30 * WAD, -30 * WAD)
    assert [c.token_id for c in ranker.candidates(book, price)] == [1]


def test_markets_without_price_or_ratio_are_skipped() -> None:
    book = PositionBook()
    book.apply(opened(1, 10, leverage=20 * WAD))
    ranker = Ranker(buffer=0.1)
    assert ranker.candidates(book, {ETH: 1 * WAD}) == []  # no mmr known yet
    book.market(ETH).set_mmr(MMR)
    assert ranker.candidates(book, {ETH: 0}) == []  # oracle down
    assert [c.token_id for c in ranker.candidates(book, {ETH: 1 * WAD})] == [1]
