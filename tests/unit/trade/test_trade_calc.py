"""The trading CLI's pure math: input parsing, trade bounds, the liquidation price (exact against
the contract's health formula), funding per position, margin removal, settlement previews."""

from __future__ import annotations

from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from perpex_cli.trade import calc
from perpex_cli.trade.calc import WAD
from services.keeper.margin import health

MMR = WAD * 25 // 1000  # 2.5 %


# ---------------------------------------------------------------- parsing


def test_parse_amount() -> None:
    assert calc.parse_amount("1000") == 1000 * WAD
    assert calc.parse_amount("0.5") == WAD // 2
    assert calc.parse_amount("10_000") == 10_000 * WAD
    assert calc.parse_amount("1,500.25") == 1500 * WAD + WAD // 4
    assert calc.parse_amount("0.000000000000000001") == 1
    for bad, why in [
        ("abc", "must be a number"),
        ("0", "greater than 0"),
        ("-5", "greater than 0"),
        ("1e-19", "more than 18 decimals"),
        ("nan", "finite"),
        ("inf", "finite"),
    ]:
        with pytest.raises(ValueError, match=why):
            calc.parse_amount(bad, "--collateral")


def test_parse_leverage_and_percent() -> None:
    assert calc.parse_leverage("5") == 5 * WAD
    assert calc.parse_leverage("5x") == 5 * WAD
    assert calc.parse_leverage("2.5X") == 5 * WAD // 2
    with pytest.raises(ValueError, match="at least 1x"):
        calc.parse_leverage("0.5")
    assert calc.parse_percent("1") == WAD // 100
    assert calc.parse_percent("0.5%") == WAD // 200
    assert calc.parse_percent("0") == 0
    with pytest.raises(ValueError, match="between 0 and 50%"):
        calc.parse_percent("60", "--slippage", maximum=50)
    with pytest.raises(ValueError, match="between 0 and 100%"):
        calc.parse_percent("-1")


def test_fmt_wad() -> None:
    assert calc.fmt_wad(1500 * WAD + WAD // 4) == "1500.25"
    assert calc.fmt_wad(-WAD) == "-1"
    assert calc.fmt_wad(0) == "0"
    assert calc.fmt_wad(1) == "0.000000000000000001"
    assert calc.fmt_wad(1234567 * WAD // 1000, 2) == "1,234.57"
    assert calc.fmt_wad(2 * WAD, 4) == "2.0000"


# ---------------------------------------------------------------- bounds


def test_price_limit_bounds_each_direction() -> None:
    price = 2000 * WAD
    one_pct = WAD // 100
    assert calc.price_limit(True, price, one_pct) == 2020 * WAD  # buying: at most
    assert calc.price_limit(False, price, one_pct) == 1980 * WAD  # selling: at least
    assert calc.price_limit(True, price, 0) == price
    assert calc.price_limit(False, 3, 0) == 3
    # rounding never loosens the bound: buying rounds down, selling up
    assert calc.price_limit(True, 1001, WAD // 1000) == 1002  # 1002.001 -> 1002
    assert calc.price_limit(False, 1001, WAD // 1000) == 1000  # 999.999 -> 1000
    assert calc.price_limit(False, 10, WAD) == 1  # never 0 (= no bound)


def test_max_fee_adds_headroom_and_at_least_a_wei() -> None:
    assert calc.max_fee(5 * WAD, WAD // 100) == 5 * WAD + 5 * WAD // 100
    assert calc.max_fee(5 * WAD, 0) == 5 * WAD + 1
    assert calc.max_fee(0, WAD // 100) == 1
    assert calc.max_fee(101, WAD // 100) == 103  # 1.01 rounds up to 2


def test_open_notional_truncates_like_solidity() -> None:
    assert calc.open_notional(1000 * WAD, 5 * WAD) == 5000 * WAD
    assert calc.open_notional(3, WAD + WAD // 2) == 4  # 4.5 -> 4


# ---------------------------------------------------------------- liquidation price


def test_liquidation_price_closed_forms() -> None:
    # long 5x: 1000 collateral, 2.5 ETH at 2000 -> 1000 + 2.5 (p - 2000) = 2.5 p 0.025
    # p = 4000 / 2.4375 = 1641.0256...
    liq = calc.liquidation_price(True, 1000 * WAD, 25 * WAD // 10, 5000 * WAD, mmr=MMR)
    assert liq is not None and abs(liq - Fraction(4000) / Fraction("2.4375") * WAD) < WAD // 10**9
    # short 5x: 1000 + 2.5 (2000 - p) = 2.5 p 0.025 -> p = 6000 / 2.5625
    liq = calc.liquidation_price(False, 1000 * WAD, 25 * WAD // 10, 5000 * WAD, mmr=MMR)
    assert liq is not None and abs(liq - Fraction(6000) / Fraction("2.5625") * WAD) < WAD // 10**9


def test_liquidation_price_counts_pending_funding() -> None:
    args = (True, 1000 * WAD, 25 * WAD // 10, 5000 * WAD)
    base = calc.liquidation_price(*args, mmr=MMR)
    # the long's side index rose by 40 per unit since entry: it owes 2.5 x 40 = 100
    owing = calc.liquidation_price(*args, 0, 40 * WAD, MMR)
    assert base is not None and owing is not None and owing > base
    assert abs(owing - Fraction(4100) / Fraction("2.4375") * WAD) < WAD // 10**9


def test_one_x_long_without_funding_has_no_liquidation_price() -> None:
    assert calc.liquidation_price(True, 5000 * WAD, 25 * WAD // 10, 5000 * WAD, mmr=MMR) is None
    assert calc.liquidation_price(True, 0, 0, 0) is None


@settings(max_examples=300, deadline=None)
@given(
    is_long=st.booleans(),
    collateral=st.integers(min_value=10**15, max_value=10**26),
    leverage=st.integers(min_value=WAD, max_value=50 * WAD),
    price=st.integers(min_value=10**14, max_value=10**24),
    funding=st.integers(min_value=-(10**21), max_value=10**21),
    mmr=st.integers(min_value=WAD // 1000, max_value=WAD // 5),
)
def test_liquidation_price_is_the_exact_boundary_of_health(
    is_long: bool, collateral: int, leverage: int, price: int, funding: int, mmr: int
) -> None:
    notional = collateral * leverage // WAD
    size = notional * WAD // price
    if size == 0:
        return
    liq = calc.liquidation_price(is_long, collateral, size, notional, 0, funding, mmr)

    def liquidatable(p: int) -> bool:
        return health(is_long, collateral, size, notional, 0, funding, p, mmr).liquidatable

    if liq is None:
        assert is_long and not liquidatable(1)
        return
    assert liquidatable(liq)
    if is_long:
        assert not liquidatable(liq + 1)
    elif liq > 1:
        assert not liquidatable(liq - 1)


# ---------------------------------------------------------------- open checks, margin removal


def test_would_be_liquidatable_checks_the_mark_only_when_diverged() -> None:
    # 20x long bought at 2000; maintenance 2.5 %, so a 2.5 % drop is the edge
    args = (True, 500 * WAD, 5 * WAD, 10_000 * WAD)
    assert calc.would_be_liquidatable(*args, 2000 * WAD, 2000 * WAD, MMR, WAD // 100) is None
    # index 3 % below entry: liquidatable at the index
    assert calc.would_be_liquidatable(*args, 1940 * WAD, 1940 * WAD, MMR, WAD // 100)
    # mark 3 % below, index at entry: diverged by > 1 % -> the mark decides
    failing = calc.would_be_liquidatable(*args, 2000 * WAD, 1940 * WAD, MMR, WAD // 100)
    assert failing is not None and failing[0] < failing[1]
    # the same mark but a 5 % spread allowance: only the index counts
    assert calc.would_be_liquidatable(*args, 2000 * WAD, 1940 * WAD, MMR, WAD // 20) is None


def _initial_margin_ok(
    is_long: bool, c: int, size: int, notional: int, price: int, max_lev: int
) -> bool:
    pnl = calc.unrealized_pnl(is_long, size, notional, price)
    return c + min(pnl, 0) >= size * price // WAD * WAD // max_lev


@pytest.mark.parametrize("is_long", [True, False])
@pytest.mark.parametrize("index", [1900 * WAD, 2000 * WAD, 2100 * WAD])
def test_max_removable_margin_is_the_contracts_limit(is_long: bool, index: int) -> None:
    size, notional, collateral, max_lev = 5 * WAD, 10_000 * WAD, 2_000 * WAD, 20 * WAD
    out = calc.max_removable_margin(
        is_long, collateral, size, notional, 0, index, index, max_lev, WAD // 100
    )
    assert 0 < out < collateral
    assert _initial_margin_ok(is_long, collateral - out, size, notional, index, max_lev)
    assert not _initial_margin_ok(is_long, collateral - out - 1, size, notional, index, max_lev)


def test_max_removable_margin_settles_funding_first_and_uses_the_worse_price() -> None:
    args = (True, 2_000 * WAD, 5 * WAD, 10_000 * WAD)
    plain = calc.max_removable_margin(*args, 0, 2000 * WAD, 2000 * WAD, 20 * WAD, WAD // 100)
    owing = calc.max_removable_margin(
        *args, 100 * WAD, 2000 * WAD, 2000 * WAD, 20 * WAD, WAD // 100
    )
    assert plain - owing == 100 * WAD
    # the mark 5 % under the index (diverged): the long's loss at the mark counts
    worse = calc.max_removable_margin(*args, 0, 2000 * WAD, 1900 * WAD, 20 * WAD, WAD // 100)
    assert worse < plain
    assert calc.max_removable_margin(*args, 0, 0, 2000 * WAD, 20 * WAD, WAD // 100) == 0


# ---------------------------------------------------------------- settlements


def test_close_settlement() -> None:
    s = calc.close_settlement(1000 * WAD, 50 * WAD, 10 * WAD, 5 * WAD)
    assert (s.equity, s.fee, s.payout) == (1040 * WAD, 5 * WAD, 1035 * WAD)
    s = calc.close_settlement(100 * WAD, -98 * WAD, 0, 5 * WAD)
    assert (s.equity, s.fee, s.payout) == (2 * WAD, 2 * WAD, 0)  # the fee is capped
    assert calc.close_settlement(100 * WAD, -120 * WAD, 0, WAD).equity < 0


def test_reduce_settlement_mirrors_the_contract() -> None:
    # long 4 ETH, notional 8000, collateral 1000 (funding owed 20): close 1 ETH for 2100
    r = calc.reduce_settlement(
        True, 1000 * WAD, 4 * WAD, 8000 * WAD, 20 * WAD, WAD, 2100 * WAD, 2 * WAD
    )
    assert r.part_notional == 2000 * WAD
    assert r.part_collateral == 245 * WAD  # (1000 - 20) / 4
    assert r.realized_pnl == 100 * WAD
    assert r.payout == 245 * WAD + 100 * WAD - 2 * WAD
    assert (r.rest_size, r.rest_notional, r.rest_collateral) == (3 * WAD, 6000 * WAD, 735 * WAD)
    assert r.negative_equity is None
    # a short losing more on the part than its share of the collateral
    r = calc.reduce_settlement(False, 100 * WAD, 4 * WAD, 8000 * WAD, 0, WAD, 2100 * WAD, WAD)
    assert r.negative_equity == 25 * WAD - 100 * WAD


# ---------------------------------------------------------------- funding


def test_funding_per_second_zero_sum() -> None:
    fps = 10**13  # positive: longs pay
    longs, shorts = 10 * WAD, 4 * WAD  # matched 4
    # all longs together pay fps x 4 per second, all shorts receive it
    long_total = calc.funding_per_second(True, longs, fps, longs, shorts)
    short_total = calc.funding_per_second(False, shorts, fps, longs, shorts)
    assert long_total == fps * 4 and short_total == -fps * 4
    # one long of 2.5: its share of the longs' payment
    assert calc.funding_per_second(True, 25 * WAD // 10, fps, longs, shorts) == fps
    # negative speed: shorts pay, longs receive
    assert calc.funding_per_second(False, shorts, -fps, longs, shorts) == fps * 4
    assert calc.funding_per_second(True, longs, -fps, longs, shorts) == -fps * 4
    # one side empty, or no speed: nothing moves
    assert calc.funding_per_second(True, longs, fps, longs, 0) == 0
    assert calc.funding_per_second(True, longs, 0, longs, shorts) == 0
    assert calc.funding_over(7) == 7 * 8 * 3600


def test_funding_payments_round_up_receipts_down() -> None:
    # 1 wei of speed over 3 units of which 1 is matched: 1/3 wei per unit
    assert calc.funding_per_second(True, WAD, 1, 3 * WAD, WAD) == 1  # pays: rounds up
    assert calc.funding_per_second(False, WAD, -1, WAD, 3 * WAD) == 1
    assert calc.funding_per_second(False, WAD, 1, WAD * 3, WAD) == -1  # receives all of 1
    assert calc.funding_per_second(True, WAD, -1, 3 * WAD, WAD) == 0  # receives 1/3: rounds to 0


def test_book_with() -> None:
    assert calc.book_with(True, 2, 10, 5) == (12, 5)
    assert calc.book_with(False, 2, 10, 5) == (10, 7)
