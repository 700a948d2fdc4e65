"""Profitability math: the reward as LiquidationModule._settle rounds it, the gas cost in
collateral, and the margin (a reward exactly at it is sent)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.keeper.profit import WAD, assess, gas_cost, gas_price_wei, reward_for, to_wad
from shared.chain.fees import GWEI, Fees


def _reference_reward(closed: int, index: int, fee: int, share: int) -> int:
    # the contract's steps, each truncated: closed * index / WAD * fee / WAD * share / WAD
    notional = Fraction(closed * index, WAD).__floor__()
    penalty = Fraction(notional * fee, WAD).__floor__()
    return Fraction(penalty * share, WAD).__floor__()


def test_reward_of_the_deployments_default_market() -> None:
    # 5 ETH unwound at 1,830 with a 2 % penalty, half of it to the keeper: 91.5 vUSDT
    assert reward_for(5 * WAD, 1830 * WAD, to_wad("0.02"), to_wad("0.5")) == 915 * WAD // 10


def test_a_partial_unwind_earns_its_part() -> None:
    full = reward_for(10 * WAD, 2000 * WAD, to_wad("0.02"), to_wad("0.5"))
    assert reward_for(4 * WAD, 2000 * WAD, to_wad("0.02"), to_wad("0.5")) * 10 == full * 4


@given(
    closed=st.integers(0, 10**30),
    index=st.integers(0, 10**26),
    fee=st.integers(0, WAD),
    share=st.integers(0, WAD),
)
def test_reward_truncates_like_the_contract(closed: int, index: int, fee: int, share: int) -> None:
    assert reward_for(closed, index, fee, share) == _reference_reward(closed, index, fee, share)


def test_gas_price_is_base_fee_plus_tip_capped_by_max_fee() -> None:
    assert gas_price_wei(Fees(3 * GWEI, GWEI), GWEI) == 2 * GWEI
    assert gas_price_wei(Fees(3 * GWEI, GWEI), 5 * GWEI) == 3 * GWEI  # base fee spiked


def test_gas_cost_in_collateral_rounds_up() -> None:
    # 180,000 gas at 10 gwei with ETH at 2,000: 0.0018 ETH = 3.6 collateral
    assert gas_cost(180_000, 10 * GWEI, 2000 * WAD) == 36 * WAD // 10
    assert gas_cost(1, 1, 1) == 1  # never understated: a tiny cost is 1, not 0
    assert gas_cost(0, 10 * GWEI, 2000 * WAD) == 0


def test_a_reward_exactly_at_the_margin_is_sent_and_one_below_is_not() -> None:
    cost = gas_cost(150_000, 20 * GWEI, 3000 * WAD)  # 9 collateral
    ratio = to_wad("1.5")
    at_margin = cost * 3 // 2
    assert assess(at_margin, 150_000, 20 * GWEI, 3000 * WAD, ratio).profitable
    below = assess(at_margin - 1, 150_000, 20 * GWEI, 3000 * WAD, ratio)
    assert not below.profitable
    assert below.cost == cost and below.ratio == pytest.approx(1.5, rel=1e-9)


def test_ratio_zero_sends_everything() -> None:
    verdict = assess(0, 200_000, 100 * GWEI, 5000 * WAD, 0)
    assert verdict.profitable and verdict.cost > 0


def test_free_gas_is_always_profitable() -> None:
    verdict = assess(0, 200_000, 0, 3000 * WAD, to_wad(1))
    assert verdict.profitable and verdict.ratio == float("inf")


def test_negative_inputs_are_refused() -> None:
    with pytest.raises(ValueError):
        assess(-1, 1, 1, 1, 1)


def test_settings_values_become_exact_wads() -> None:
    assert to_wad(3000.1) == 3000 * WAD + WAD // 10
    assert to_wad("1.05") == WAD + 5 * WAD // 100
    assert to_wad(Decimal("0")) == 0
