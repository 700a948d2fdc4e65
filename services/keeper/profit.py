"""Is a liquidation worth its gas? (pure)

The reward is the keeper's share of the penalty on the base size the liquidation unwinds
(`closed`: all of the position, or the part the vAMM's bounds let through), exactly as
LiquidationModule._settle computes it:

    penalty = closed * index / 1e18 * liquidationFeeRatio / 1e18
    reward  = penalty * liquidationRewardShare / 1e18                 (collateral, WAD)

The keeper takes (closed, reward) from the return value of its pending-block simulation
(`liquidatePosition` returns them), so a partial unwind is priced as partial. `reward_for`
mirrors the formula: the fallback for a deployment whose liquidatePosition returns nothing
(priced on the whole size, an upper bound), and the reference the unit tests check.

The cost is the gas the liquidation uses at the price the next block charges, in collateral:

    gas price = min(maxFeePerGas, baseFee(next block) + maxPriorityFeePerGas)   (wei per gas)
    cost      = gas * gas price * nativePrice / 1e18                          (collateral, WAD)

`gas` is eth_estimateGas's answer (the limit sent is GAS_MULTIPLIER higher; unused gas is not
paid); `nativePrice` is the price of one native token (ETH) in collateral units, WAD.

    profitable  <=>  reward >= cost * KEEPER_MIN_PROFIT_RATIO    (ratio 0: always)

A reward exactly at the margin is profitable: the check never skips a liquidation within it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal

from shared.chain.fees import Fees

WAD = 10**18


def to_wad(value: float | Decimal | str) -> int:
    """A decimal setting (a ratio, a price) as a WAD integer, without binary float error
    (3000.1 -> 3000.1e18 exactly)."""
    return int(Decimal(str(value)) * WAD)


def reward_for(closed: int, index: int, fee_ratio: int, reward_share: int) -> int:
    """The caller's reward for unwinding `closed` (base, WAD) at `index` (WAD), as the
    contract rounds it (each step truncates)."""
    penalty = closed * index // WAD * fee_ratio // WAD
    return penalty * reward_share // WAD


def gas_price_wei(fees: Fees, base_fee: int) -> int:
    """What an EIP-1559 transaction pays per gas in the next block: the base fee plus its tip,
    never more than its max fee."""
    return min(fees.max_fee_per_gas, base_fee + fees.max_priority_fee_per_gas)


def gas_cost(gas: int, price_wei: int, native_price_wad: int) -> int:
    """`gas` at `price_wei` per gas, in collateral units (WAD), the native token being worth
    `native_price_wad` collateral (WAD). Rounded up: the cost is never understated."""
    wei = gas * price_wei
    return -(-wei * native_price_wad // WAD)


@dataclass(frozen=True, slots=True)
class Assessment:
    reward: int  # collateral, WAD
    cost: int  # collateral, WAD
    gas: int
    price_wei: int
    profitable: bool

    @property
    def ratio(self) -> float:
        """reward / cost (inf when the gas costs nothing)."""
        return self.reward / self.cost if self.cost else math.inf


def assess(
    reward: int, gas: int, price_wei: int, native_price_wad: int, min_ratio_wad: int
) -> Assessment:
    """Whether `reward` pays for `gas` at `price_wei` with KEEPER_MIN_PROFIT_RATIO
    (`min_ratio_wad`, WAD; 0: every liquidation is sent)."""
    if reward < 0 or gas < 0 or price_wei < 0 or native_price_wad < 0 or min_ratio_wad < 0:
        raise ValueError("reward, gas, gas price, native price and ratio must be >= 0")
    cost = gas_cost(gas, price_wei, native_price_wad)
    profitable = min_ratio_wad == 0 or reward * WAD >= cost * min_ratio_wad
    return Assessment(reward, cost, gas, price_wei, profitable)
