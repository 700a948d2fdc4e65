"""EIP-1559 fee arithmetic (pure).

Initial fees: maxFeePerGas = 2 x base fee + priority fee, which stays valid through six
consecutive full blocks of base-fee growth. Replacement: geth/anvil/reth accept a transaction
with the same nonce only when both maxFeePerGas and maxPriorityFeePerGas rise by at least 10%;
we bump by 12.5% (+1 wei) and follow a spiked base fee when it is higher.
"""

from __future__ import annotations

from dataclasses import dataclass

GWEI = 10**9
REPLACEMENT_MIN_BUMP_PCT = 10


@dataclass(frozen=True)
class Fees:
    max_fee_per_gas: int
    max_priority_fee_per_gas: int

    def as_tx(self) -> dict[str, int]:
        return {
            "maxFeePerGas": self.max_fee_per_gas,
            "maxPriorityFeePerGas": self.max_priority_fee_per_gas,
        }


@dataclass(frozen=True)
class FeePolicy:
    min_priority_fee: int = 1 * GWEI // 10  # 0.1 gwei floor
    max_fee_cap: int = 500 * GWEI  # never pay more than this per gas
    bump_pct: int = 125  # 12.5% expressed per mille / 10: see bump()

    def initial(self, base_fee: int, suggested_priority: int) -> Fees:
        priority = max(suggested_priority, self.min_priority_fee)
        max_fee = min(2 * base_fee + priority, self.max_fee_cap)
        return Fees(max_fee, min(priority, max_fee))

    def bump(self, previous: Fees, base_fee: int) -> Fees:
        """Fees for a replacement of a transaction sent with `previous`."""
        priority = _bumped(previous.max_priority_fee_per_gas, self.bump_pct)
        max_fee = max(_bumped(previous.max_fee_per_gas, self.bump_pct), 2 * base_fee + priority)
        if max_fee > self.max_fee_cap:
            raise FeeCapExceeded(
                f"replacement needs maxFeePerGas {max_fee} wei > cap {self.max_fee_cap} wei"
            )
        return Fees(max_fee, priority)

    @staticmethod
    def is_valid_replacement(previous: Fees, new: Fees) -> bool:
        def ok(old: int, newer: int) -> bool:
            return newer * 100 >= old * (100 + REPLACEMENT_MIN_BUMP_PCT) and newer > old

        return ok(previous.max_fee_per_gas, new.max_fee_per_gas) and ok(
            previous.max_priority_fee_per_gas, new.max_priority_fee_per_gas
        )


class FeeCapExceeded(RuntimeError):
    pass


def _bumped(value: int, per_mille_over_ten: int) -> int:
    # value * 1.125, rounded up, and at least +1 wei so a zero fee still moves
    return max(value + 1, -(-value * (1000 + per_mille_over_ten) // 1000))


def gas_limit(estimate: int, multiplier: float) -> int:
    """Gas estimate x GAS_MULTIPLIER, rounded up."""
    if multiplier < 1:
        raise ValueError("gas multiplier must be >= 1")
    return int(-(-estimate * round(multiplier * 10_000) // 10_000))


def max_cost_wei(gas: int, fees: Fees, value: int = 0) -> int:
    """The most a transaction can cost its sender."""
    return gas * fees.max_fee_per_gas + value
