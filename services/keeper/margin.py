"""The PositionManager's margin math, mirrored off-chain in WAD integers (pure).

Exactly as contracts/src/core/PositionManagerBase.sol computes it (`_unrealizedPnl`,
`_pendingFunding`, `_health`), including Solidity's signed division, which truncates toward
zero (Python's // floors):

    entryPrice        = notional * 1e18 / size
    unrealizedPnl     = (index - entryPrice) * size / 1e18            (negated for shorts)
    pendingFunding    = size * (cumulative(side) - entryFundingIndex) / 1e18
                        (each side has its own index; a payment (positive) rounds up, a receipt
                        (negative) toward zero)
    margin            = collateral + unrealizedPnl - pendingFunding
    maintenanceMargin = size * index / 1e18 * maintenanceMarginRatio / 1e18
    liquidatable      <=> margin < maintenanceMargin   (and the oracle answers: index > 0)

`trigger_price` inverts this for ranking: the index price at which margin falls to
`factor` x maintenance (factor 1 = the liquidation price). It is a float used to pre-select
candidates cheaply; every decision uses the exact integer `health`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

WAD = 10**18


def sdiv(a: int, b: int) -> int:
    """Solidity int256 division: the quotient truncated toward zero."""
    if b == 0:
        raise ZeroDivisionError("division by zero")
    q = abs(a) // abs(b)
    return q if (a < 0) == (b < 0) else -q


def entry_price(size: int, notional: int) -> int:
    return notional * WAD // size


def unrealized_pnl(is_long: bool, size: int, notional: int, index: int) -> int:
    pnl = sdiv((index - entry_price(size, notional)) * size, WAD)
    return pnl if is_long else -pnl


def pending_funding(size: int, entry_funding_index: int, cumulative: int) -> int:
    """Funding owed since the entry index (positive: pays); `cumulative` is the position's
    side's index."""
    owed = size * (cumulative - entry_funding_index)
    if owed > 0:
        return (owed + WAD - 1) // WAD
    return sdiv(owed, WAD)


def maintenance_margin(size: int, index: int, mmr: int) -> int:
    return size * index // WAD * mmr // WAD


@dataclass(frozen=True, slots=True)
class Health:
    margin: int
    maintenance: int
    liquidatable: bool

    def ratio(self) -> float:
        """margin / maintenance (below 1: liquidatable); inf when maintenance is 0."""
        if self.maintenance <= 0:
            return math.inf if self.margin >= 0 else -math.inf
        return self.margin / self.maintenance

    def within(self, buffer_wad: int) -> bool:
        """margin < maintenance x (1 + buffer): close enough to confirm on-chain."""
        return self.margin * WAD < self.maintenance * (WAD + buffer_wad)


def health(
    is_long: bool,
    collateral: int,
    size: int,
    notional: int,
    entry_funding_index: int,
    cumulative: int,
    index: int,
    mmr: int,
) -> Health:
    funding = pending_funding(size, entry_funding_index, cumulative)
    if index == 0:  # the oracle cannot answer: the contract reports not liquidatable
        return Health(collateral - funding, 0, False)
    margin = collateral + unrealized_pnl(is_long, size, notional, index) - funding
    mm = maintenance_margin(size, index, mmr)
    return Health(margin, mm, margin < mm)


def trigger_price(
    is_long: bool,
    collateral: int,
    size: int,
    notional: int,
    entry_funding_index: int,
    cumulative: int,
    mmr: int,
    factor: float = 1.0,
) -> float:
    """Index price (WAD, as float) at which margin = factor x maintenance.

    Longs are at or below it when price <= trigger; shorts when price >= trigger. Returns +inf
    (long: always) or 0 / +inf (short) in degenerate cases."""
    s = size / WAD
    r = mmr / WAD
    base = collateral - pending_funding(size, entry_funding_index, cumulative)
    ep = entry_price(size, notional)
    if is_long:
        # base + s*(p - ep) < factor*s*p*r  <=>  p*s*(1 - factor*r) < s*ep - base
        denom = s * (1.0 - factor * r)
        if denom <= 0:
            return math.inf
        return max(0.0, (s * ep - base) / denom)
    # short: base + s*(ep - p) < factor*s*p*r  <=>  p > (base + s*ep) / (s*(1 + factor*r))
    denom = s * (1.0 + factor * r)
    if denom <= 0:
        return 0.0
    return max(0.0, (base + s * ep) / denom)
