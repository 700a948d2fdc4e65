"""What to do with a position after an on-chain health read or a failed liquidation (pure).

- The batch health view says the position does not exist: someone closed or liquidated it;
  drop it without sending anything.
- It is liquidatable and no liquidation of it is in flight: liquidate.
- The market's oracle could not answer (index price 0): the contract refuses to liquidate;
  look again next block.

What a liquidation's failed simulation means is races.py's (`classify_revert`).

`CheckTracker` decides when a candidate needs another on-chain read: when anything that the
margin depends on changed since its last read (price, market funding or ratio, the position),
or when the last read said liquidatable but no liquidation is in flight.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum


class LiquidationAction(Enum):
    LIQUIDATE = "liquidate"
    DROP = "drop"
    HEALTHY = "healthy"
    IN_FLIGHT = "in_flight"
    ORACLE_DOWN = "oracle_down"


@dataclass(frozen=True, slots=True)
class OnchainHealth:
    token_id: int
    exists: bool
    liquidatable: bool
    margin: int
    maintenance: int
    index_price: int


def decide(h: OnchainHealth, in_flight: bool) -> LiquidationAction:
    if not h.exists:
        return LiquidationAction.DROP
    if in_flight:
        return LiquidationAction.IN_FLIGHT
    if h.index_price == 0:
        return LiquidationAction.ORACLE_DOWN
    return LiquidationAction.LIQUIDATE if h.liquidatable else LiquidationAction.HEALTHY


Stamp = tuple[int, int, int]


class CheckTracker:
    def __init__(self) -> None:
        self._last: dict[int, tuple[Stamp, LiquidationAction]] = {}

    def needs_check(self, token_id: int, stamp: Stamp, in_flight: bool) -> bool:
        if in_flight:
            return False
        last = self._last.get(token_id)
        if last is None or last[0] != stamp:
            return True
        return last[1] in (LiquidationAction.LIQUIDATE, LiquidationAction.ORACLE_DOWN)

    def record(self, token_id: int, stamp: Stamp, action: LiquidationAction) -> None:
        self._last[token_id] = (stamp, action)

    def invalidate(self, token_id: int) -> None:
        """Read it again at the next opportunity (e.g. its liquidation failed)."""
        self._last.pop(token_id, None)

    def forget_missing(self, present: Collection[int]) -> None:
        if len(self._last) > 2 * max(len(present), 1024):
            self._last = {t: v for t, v in self._last.items() if t in present}
