"""Keeping among competitors: what a failed simulation or a reverted liquidation means, and the
order this keeper works through a round's liquidatable positions in (pure).

Liquidation is permissionless: other keepers (other deployments, other wallets, bots of
anyone) liquidate the same positions. Just before sending, the keeper simulates the
liquidation on the pending block (the latest block plus the transactions the node holds for
the next one: a competitor's liquidation already broadcast is in it). The contract's error
says what happened:

| decoded error            | meaning                                           | action   | lost race |
| ------------------------ | ------------------------------------------------- | -------- | --------- |
| `PositionNotFound`       | closed or fully liquidated by someone else        | drop     | yes       |
| `NotLiquidatable`        | made healthy: liquidated in part by someone else, | recheck  | yes       |
|                          | margin added, the price came back                 |          |           |
| `LiquidationOutOfBounds` | no room left in the vAMM this block (the mark is  | recheck  | no        |
|                          | at the bound: other liquidations went first)      |          |           |
| anything else            | unexpected: logged                                | retry    | no        |

drop: the position leaves the book, nothing is sent; recheck / retry: nothing is sent and the
position is read again next block. A liquidation of ours mined but reverted is a lost race
when another liquidator's `PositionLiquidated` for the same position was mined between the
block the keeper decided on and the block of its revert (`mined_lost_race`).

Dispatch order: two keepers that see the same positions go under in the same block would, in
rank order, simulate the same position at the same moment, both find it liquidatable, and both
send (one reverts). Each keeper instead takes a round's liquidatable positions in an order of
its own, a hash of the token id keyed by its wallet address, after the insolvent ones (margin
below zero: every block costs the insurance fund), so two keepers rarely reach one position
at the same time, and when one is second its pending-block simulation sees the other's
transaction and drops the position without spending gas.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum

from shared.chain.errors import DecodedError


class RevertAction(Enum):
    DROP = "drop"  # the position is gone: out of the book
    RECHECK = "recheck"  # still there: read it again next block
    RETRY = "retry"  # unexpected: read it again next block


@dataclass(frozen=True, slots=True)
class RevertClass:
    action: RevertAction
    reason: str  # metric label
    lost_race: bool


GONE = RevertClass(RevertAction.DROP, "gone", lost_race=True)
NOT_LIQUIDATABLE = RevertClass(RevertAction.RECHECK, "not_liquidatable", lost_race=True)
OUT_OF_BOUNDS = RevertClass(RevertAction.RECHECK, "out_of_bounds", lost_race=False)
OTHER = RevertClass(RevertAction.RETRY, "revert", lost_race=False)
MINED_LOST_RACE = RevertClass(RevertAction.RECHECK, "mined_after_competitor", lost_race=True)
MINED_REVERTED = RevertClass(RevertAction.RECHECK, "mined_reverted", lost_race=False)

_BY_NAME = {
    "PositionNotFound": GONE,
    "NotLiquidatable": NOT_LIQUIDATABLE,
    "LiquidationOutOfBounds": OUT_OF_BOUNDS,
}


def classify_revert(error: DecodedError | None, reason: str = "") -> RevertClass:
    """A simulated liquidation's revert, by the contract error's name (decoded from the revert
    data); `reason`, the decoded text, when the data did not come back."""
    if error is not None:
        return _BY_NAME.get(error.name, OTHER)
    name = reason.split("(", 1)[0].strip()
    return _BY_NAME.get(name, OTHER)


def classify_mined_revert(liquidators: Iterable[str], ours: str) -> RevertClass:
    """Our liquidation was mined but reverted. `liquidators`: the liquidator of every
    PositionLiquidated of the position mined since the keeper decided to liquidate it (up to
    the block of the revert)."""
    me = ours.lower()
    if any(addr.lower() != me for addr in liquidators):
        return MINED_LOST_RACE
    return MINED_REVERTED


def dispatch_key(token_id: int, margin: int, salt: bytes) -> tuple[int, bytes]:
    """Sort key: insolvent positions first, then a hash of the token id keyed by `salt`."""
    digest = hashlib.blake2b(token_id.to_bytes(32, "big"), key=salt[:64], digest_size=8)
    return (0 if margin < 0 else 1, digest.digest())


def dispatch_order(targets: Iterable[tuple[int, int]], salt: bytes) -> list[int]:
    """Token ids of `targets` ((token id, margin) pairs) in this keeper's order."""
    return [t for t, m in sorted(targets, key=lambda tm: dispatch_key(tm[0], tm[1], salt))]
