"""The position book: events applied once, in order, reverted events, partial liquidations."""

from __future__ import annotations

from keeper_helpers import BTC, ETH, WAD, closed, env, funding, margin_changed, opened, reduced

from services.keeper.book import END_OF_BLOCK, BookPosition, PositionBook


def _row(
    token: int, block: int, collateral: int = 500 * WAD, entry_funding: int = 7
) -> BookPosition:
    return BookPosition(
        token_id=token,
        market_id=ETH.upper().replace("0X", "0x"),
        owner="0x" + "ab" * 20,
        is_long=True,
        collateral=collateral,
        size=5 * WAD,
        notional=10_000 * WAD,
        entry_funding_index=entry_funding,
        updated=(block, END_OF_BLOCK),
    )


def test_open_margin_close_and_duplicates() -> None:
    book = PositionBook()
    ev = opened(1, 10)
    assert book.apply(ev).status == "applied"
    assert book.apply(ev).status == "duplicate"  # re-delivery
    pos = book.get(1)
    assert pos is not None and pos.collateral == 1_000 * WAD and pos.market_id == ETH
    assert book.tokens_in(ETH) == {1}
    assert book.apply(margin_changed(1, 11, 1_200 * WAD)).applied
    assert book.get(1).collateral == 1_200 * WAD  # type: ignore[union-attr]
    assert book.apply(closed(1, 12)).applied
    assert 1 not in book and book.tokens_in(ETH) == set()
    # replays after the close never resurrect it
    replay = opened(1, 10).model_copy(update={"block_hash": "0x" + "99" * 32})
    assert book.apply(replay).status == "stale"


def test_a_fork_that_comes_back_applies_again() -> None:
    """A(H1), reverted; B(H2), reverted; A(H1) again: the last one is not a redelivery."""
    book = PositionBook()
    a = opened(1, 10)
    b = a.model_copy(update={"block_hash": "0x" + "e2" * 32})
    assert book.apply(a).applied
    assert book.apply(a).status == "duplicate"
    assert book.apply(a.as_reverted()).status != "duplicate"
    assert book.apply(b).status != "duplicate"
    assert book.apply(b.as_reverted()).status != "duplicate"
    assert book.apply(a).status != "duplicate"  # the first fork is canonical again
    assert book.apply(a).status == "duplicate"


def test_a_reloaded_position_never_reuses_a_version() -> None:
    """Ranking caches key on the position's version: a token that leaves the book (its
    partition moved away) and comes back with other data must not look unchanged."""
    book = PositionBook()
    assert book.upsert(_row(1, 10))
    first = book.get(1).version  # type: ignore[union-attr]
    book.remove(1, tombstone=False)
    assert book.upsert(_row(1, 12, collateral=300 * WAD))
    assert book.get(1).version != first  # type: ignore[union-attr]
    versions = {book.get(1).version}  # type: ignore[union-attr]
    assert book.apply(margin_changed(1, 13, 250 * WAD)).applied
    assert book.get(1).version not in versions | {first}  # type: ignore[union-attr]


def test_older_events_do_not_roll_back_bootstrap_state() -> None:
    book = PositionBook()
    assert book.upsert(_row(5, block=20, collateral=700 * WAD))
    # events the bootstrap snapshot already reflects (block <= 20) are stale
    assert book.apply(opened(5, 15)).status == "stale"
    assert book.apply(margin_changed(5, 20, 1 * WAD)).status == "stale"
    assert book.get(5).collateral == 700 * WAD  # type: ignore[union-attr]
    assert book.apply(margin_changed(5, 21, 900 * WAD)).applied
    assert book.get(5).collateral == 900 * WAD  # type: ignore[union-attr]


def test_margin_change_for_unknown_position_asks_for_a_chain_read() -> None:
    book = PositionBook()
    result = book.apply(margin_changed(9, 30, WAD))
    assert result.refresh == (9,) and 9 not in book


def test_reverted_position_events_ask_for_a_chain_read() -> None:
    book = PositionBook()
    book.apply(opened(2, 10))
    book.apply(closed(2, 11, name="PositionLiquidated"))
    assert book.is_tombstoned(2)
    rev = closed(2, 11, name="PositionLiquidated").model_copy(update={"reverted": True})
    result = book.apply(rev)
    assert result.refresh == (2,)
    assert book.apply(rev).status == "duplicate"
    # the chain says it is open again: a forced upsert clears the tombstone
    assert book.upsert(_row(2, block=11), force=True)
    assert 2 in book and not book.is_tombstoned(2)


def test_reorg_reinclusion_is_applied_again() -> None:
    book = PositionBook()
    first = opened(3, 10)
    book.apply(first)
    book.apply(first.as_reverted())
    again = first.model_copy(update={"block_hash": "0x" + "ee" * 32, "block_number": 11})
    assert book.apply(again).applied  # same event id, new block hash


def test_entry_funding_comes_from_the_events() -> None:
    book = PositionBook()
    book.market(ETH).set_mmr(WAD // 40)
    book.apply(opened(4, 20, entry_funding=300))
    assert book.entry_funding(book.get(4)) == 300  # type: ignore[arg-type]
    # a margin change settles funding and resets the entry index to the one it carries
    book.apply(margin_changed(4, 30, 2 * WAD, entry_funding=900))
    assert book.entry_funding(book.get(4)) == 900  # type: ignore[arg-type]


def test_the_current_index_comes_from_the_chain_and_invalidates_triggers() -> None:
    """Funding accrues every second: no event holds the current index; the health loop sets
    it from its per-block chain read, and a change bumps the market's version."""
    book = PositionBook()
    m = book.market(ETH)
    v = m.version
    book.set_cumulative(ETH, 0, 0)
    assert m.version == v  # unchanged
    book.set_cumulative(ETH, 1_234, -1_000)
    assert m.cumulative_for(True) == 1_234 and m.cumulative_for(False) == -1_000
    assert m.version == v + 1
    assert book.apply(funding(40, 1_000)).applied
    assert m.cumulative_for(True) == 1_234  # the event's checkpoint is not the index now
    assert m.version == v + 2  # but a new rate invalidates cached triggers


def test_partial_liquidation_keeps_the_position_with_its_new_state() -> None:
    book = PositionBook()
    book.apply(opened(5, 10))
    pos = book.get(5)
    assert pos is not None
    size, notional = pos.size, pos.notional
    assert book.apply(closed(5, 20, name="PositionLiquidated", remaining=size // 4)).status == (
        "ignored"
    )
    assert 5 in book and not book.is_tombstoned(5)
    assert book.apply(reduced(5, 20, size // 4, notional // 4, 123 * WAD, 77)).applied
    pos = book.get(5)
    assert pos is not None
    assert (pos.size, pos.notional, pos.collateral) == (size // 4, notional // 4, 123 * WAD)
    assert pos.entry_funding_index == 77 and pos.updated == (20, 3)
    # the rest liquidated later: gone
    assert book.apply(closed(5, 25, name="PositionLiquidated", remaining=0)).applied
    assert 5 not in book and book.is_tombstoned(5)


def test_reduced_for_unknown_position_asks_for_a_chain_read() -> None:
    book = PositionBook()
    result = book.apply(reduced(9, 30, WAD, WAD, WAD, 0))
    assert result.refresh == (9,) and 9 not in book


def test_ownership_filter() -> None:
    book = PositionBook(owns=lambda t: t % 2 == 0)
    assert book.apply(opened(1, 10)).status == "ignored"
    assert book.apply(opened(2, 10)).applied
    book.apply(opened(4, 10, log_index=2))
    dropped = book.set_owner_filter(lambda t: t == 4)
    assert dropped == [2] and set(book.positions) == {4}
    assert not book.is_tombstoned(2)  # another replica owns it now; not closed


def test_market_events() -> None:
    book = PositionBook()
    added = env(
        "MarketAdded",
        1,
        market_id=BTC,
        args={
            "marketId": BTC,
            "pair": "BTC/USDT",
            "vamm": "0x" + "00" * 20,
            "oracleFeed": "0x" + "00" * 20,
        },
    )
    assert book.apply(added).markets == (BTC,)
    assert book.market(BTC).pair == "BTC/USDT"
    paused = env("MarketPaused", 2, market_id=BTC, args={"marketId": BTC, "paused": True})
    book.apply(paused)
    assert book.market(BTC).paused
    book.apply(paused.as_reverted())
    assert not book.market(BTC).paused


def test_a_governance_change_of_the_maintenance_ratio_applies_at_once() -> None:
    """RiskParamsUpdated (an executed proposal) moves the mirror's maintenance ratio without a
    chain read; the same event reverted by a reorg asks for the chain's value again."""
    book = PositionBook()
    book.market(ETH).set_mmr(WAD // 40)
    before = book.market(ETH).version
    args = {
        "marketId": ETH,
        "maxLeverage": str(10 * WAD),
        "maintenanceMarginRatio": str(WAD // 20),
        "liquidationFeeRatio": str(WAD // 50),
    }
    changed = env("RiskParamsUpdated", 30, market_id=ETH, args=args)
    result = book.apply(changed)
    assert result.applied and result.markets == ()
    assert book.market(ETH).mmr == WAD // 20
    assert book.market(ETH).version > before  # cached triggers are recomputed
    assert book.apply(changed.as_reverted()).markets == (ETH,)
