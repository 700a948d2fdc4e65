"""The off-chain margin math mirrors PositionManager.sol exactly (WAD ints, Solidity division)."""

from __future__ import annotations

from fractions import Fraction

from hypothesis import given
from hypothesis import strategies as st

from services.keeper.margin import (
    WAD,
    entry_price,
    health,
    maintenance_margin,
    pending_funding,
    sdiv,
    trigger_price,
    unrealized_pnl,
)


def _trunc(x: Fraction) -> int:
    return int(x)  # int() of a Fraction truncates toward zero, like Solidity


def test_sdiv_truncates_toward_zero() -> None:
    assert sdiv(7, 2) == 3 and sdiv(-7, 2) == -3 and sdiv(7, -2) == -3 and sdiv(-7, -2) == 3
    assert -7 // 2 == -4  # what Python would do instead


def test_long_and_short_examples() -> None:
    size, notional = 5 * WAD, 10_000 * WAD  # 5 ETH at 2000
    assert entry_price(size, notional) == 2000 * WAD
    assert unrealized_pnl(True, size, notional, 1900 * WAD) == -500 * WAD
    assert unrealized_pnl(False, size, notional, 1900 * WAD) == 500 * WAD
    mmr = WAD * 25 // 1000
    assert maintenance_margin(size, 2000 * WAD, mmr) == 250 * WAD
    h = health(True, 1_000 * WAD, size, notional, 0, 0, 1_850 * WAD, mmr)
    # margin 1000 - 750 = 250; maintenance 5 * 1850 * 2.5% = 231.25
    assert h.margin == 250 * WAD and h.maintenance == 23125 * WAD // 100
    assert not h.liquidatable
    h = health(True, 1_000 * WAD, size, notional, 0, 0, 1_840 * WAD, mmr)
    assert h.liquidatable  # 200 < 230
    assert health(True, WAD, size, notional, 0, 0, 0, mmr).liquidatable is False  # no oracle


def test_funding_sign_and_rounding() -> None:
    # each side has its own index: a position pays when its side's index rises
    assert pending_funding(3 * WAD, 10, 20) == 30  # 3 * 10 (WAD cancels)
    assert pending_funding(3 * WAD, 20, 10) == -30  # the index fell: it receives
    # a receipt truncates toward zero (receive less), a payment rounds up (pay more): payers
    # always cover receivers
    assert pending_funding(3, -1, -2 * WAD // 3 - 1) == sdiv(3 * (-2 * WAD // 3 - 1 + 1), WAD)
    assert pending_funding(1, 0, -(WAD - 1)) == 0  # -0.99.. truncates to 0, not -1
    assert pending_funding(1, 0, WAD - 1) == 1  # 0.99.. to pay rounds up to 1
    assert pending_funding(1, 0, WAD) == 1


@given(
    is_long=st.booleans(),
    collateral=st.integers(1, 10**30),
    size=st.integers(1, 10**28),
    notional=st.integers(1, 10**30),
    entry_funding=st.integers(-(10**24), 10**24),
    cumulative=st.integers(-(10**24), 10**24),
    index=st.integers(0, 10**24),
    mmr=st.integers(1, WAD // 2),
)
def test_health_matches_reference(
    is_long: bool,
    collateral: int,
    size: int,
    notional: int,
    entry_funding: int,
    cumulative: int,
    index: int,
    mmr: int,
) -> None:
    ep = notional * WAD // size
    pnl = _trunc(Fraction((index - ep) * size, WAD))
    pnl = pnl if is_long else -pnl
    owed = Fraction(size * (cumulative - entry_funding), WAD)
    f = -((-owed.numerator) // owed.denominator) if owed > 0 else _trunc(owed)  # pay: ceil
    h = health(is_long, collateral, size, notional, entry_funding, cumulative, index, mmr)
    if index == 0:
        assert (h.margin, h.liquidatable) == (collateral - f, False)
        return
    margin = collateral + pnl - f
    mm = size * index // WAD * mmr // WAD
    assert (h.margin, h.maintenance, h.liquidatable) == (margin, mm, margin < mm)


@given(
    is_long=st.booleans(),
    collateral=st.integers(10 * WAD, 10_000 * WAD),
    leverage=st.integers(1, 20),
    price=st.integers(100 * WAD, 100_000 * WAD),
    factor=st.sampled_from([1.0, 1.1, 1.5]),
)
def test_trigger_price_separates_liquidatable_prices(
    is_long: bool, collateral: int, leverage: int, price: int, factor: float
) -> None:
    mmr = WAD * 25 // 1000
    notional = collateral * leverage
    size = notional * WAD // price
    trig = trigger_price(is_long, collateral, size, notional, 0, 0, mmr, factor)
    # a little beyond the trigger the position is within `factor` of maintenance; a little
    # before it, it is not
    beyond = int(trig * (0.999 if is_long else 1.001))
    before = int(trig * (1.001 if is_long else 0.999))
    buffer_wad = round((factor - 1) * WAD)
    if beyond > 10**12:  # far above integer rounding
        assert health(is_long, collateral, size, notional, 0, 0, beyond, mmr).within(buffer_wad)
    if before > 10**12:
        assert not health(is_long, collateral, size, notional, 0, 0, before, mmr).within(buffer_wad)
