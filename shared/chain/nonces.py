"""The nonce ledger's decisions (pure): what the transaction sender does with each nonce.

Every nonce the sender hands out ends in one of three ways: mined (one of its signed versions,
or a transaction of another process when the wallet is shared), replaced (a fee bump: a new
signed version at the same nonce, still tracked), or deliberately cancelled (a zero-value
transfer to itself at that nonce). Until then it stays in the ledger, whatever happens to the
caller waiting for it.

The functions here take what the node said (its mined nonce, its pending nonce, the nonces its
txpool holds for the wallet) and what the ledger holds, and return what to do; the sender
(shared/chain/tx.py) does the I/O.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from enum import Enum

from shared.backoff import backoff_delay


class Broadcast(Enum):
    """What the sender knows of a signed transaction's broadcast."""

    SENT = "sent"  # the node accepted it (or said it already knew it)
    UNKNOWN = "unknown"  # the answer was lost: the node may or may not hold it


class Step(Enum):
    RESOLVE = "resolve"  # the nonce is used: read the receipts of our hashes
    CHECK_KNOWN = "check_known"  # ask the node whether it holds the broadcast; re-send if not
    REPLACE = "replace"  # not mined for REPLACE_AFTER_S: bump the fees (same nonce)
    WAIT = "wait"


def entry_step(
    nonce: int,
    broadcast: Broadcast,
    mined_nonce: int,
    now: float,
    sent_at: float,
    checked_at: float,
    replace_after_s: float,
    recheck_s: float,
) -> Step:
    """The next step for one tracked nonce, given the account's mined nonce (`latest`)."""
    if nonce < mined_nonce:
        return Step.RESOLVE
    if broadcast is Broadcast.UNKNOWN and now - checked_at >= recheck_s:
        return Step.CHECK_KNOWN
    if now - sent_at >= replace_after_s:
        return Step.REPLACE
    return Step.WAIT


def recheck_delay(checks: int, poll_s: float, cap_s: float = 5.0) -> float:
    """How long after its `checks`-th check an unknown broadcast is checked again: at the next
    poll first, then backing off (x2) up to `cap_s` (or 20 polls, if fewer)."""
    cap = max(poll_s, min(cap_s, 20 * poll_s))
    return backoff_delay(max(1, checks), poll_s, cap)


def holes(mined_nonce: int, tracked: Collection[int]) -> list[int]:
    """Nonces between the account's mined nonce and the highest tracked one that no tracked
    transaction holds: everything tracked above them queues behind them for ever unless they
    are filled (a cancellation at each)."""
    above = [n for n in tracked if n >= mined_nonce]
    if not above:
        return []
    held = set(above)
    return [n for n in range(mined_nonce, max(above)) if n not in held]


@dataclass(frozen=True)
class ReconcilePlan:
    """What to do at start with the nonces the node knows of and the ledger does not drive.

    `wait`: a previous run's transactions the node can mine now (contiguous from the mined
    nonce): wait for them (they may be liquidations that must not be sent twice).
    `cancel`: every nonce from the first gap up to the highest the node or the ledger knows:
    the gap itself (nothing will ever fill it) and whatever queues behind it (old work that
    would all mine at once, and revert, once the gap is filled). Each gets a cancellation.
    `next_nonce`: where new work starts."""

    wait: tuple[int, ...]
    cancel: tuple[int, ...]
    next_nonce: int

    @property
    def clean(self) -> bool:
        return not self.wait and not self.cancel


def plan_reconcile(
    mined_nonce: int,
    pending_nonce: int,
    pool_nonces: Collection[int] | None,
    owned: Collection[int] = (),
    next_nonce: int | None = None,
) -> ReconcilePlan:
    """`pool_nonces`: the nonces the node's txpool holds for the wallet (pending and queued),
    None when the node does not say (no txpool API: a queue behind a gap is then invisible and
    only `pending_nonce > mined_nonce` is seen). `owned`: nonces the ledger tracks (this run's
    own transactions: they are driven by the sender, never waited for or cancelled here).
    `next_nonce`: the next nonce the ledger would hand out, if it has one."""
    held = {n for n in (pool_nonces or ()) if n >= mined_nonce}
    held.update(range(mined_nonce, pending_nonce))
    mine = {n for n in owned if n >= mined_nonce}
    filled = held | mine
    top = max(filled, default=mined_nonce - 1)
    if next_nonce is not None:
        # Nonces this run handed out and no longer tracks (resolved) are below the mined
        # nonce; anything between it and next_nonce without an entry is a hole too.
        top = max(top, next_nonce - 1)
    n = mined_nonce
    wait: list[int] = []
    while n <= top and n in filled:
        if n not in mine:
            wait.append(n)
        n += 1
    cancel = tuple(m for m in range(n, top + 1) if m not in mine)
    return ReconcilePlan(tuple(wait), cancel, max(top + 1, mined_nonce, pending_nonce))


def stuck_reason(
    unmined: Collection[tuple[int, str, float]],
    now: float,
    stuck_after_s: float,
    unfillable: dict[int, str],
) -> str | None:
    """Why the sender is stuck, or None. `unmined`: (nonce, label, handed out at) of every
    tracked transaction not mined yet; `unfillable`: nonces of a gap the sender could not fill,
    with the reason."""
    if unfillable:
        nonce = min(unfillable)
        return f"nonce gap at {nonce} cannot be filled ({unfillable[nonce]})"
    if not unmined:
        return None
    nonce, label, since = min(unmined)
    age = now - since
    if age >= stuck_after_s:
        return f"nonce {nonce} ({label}) not mined for {age:.0f}s"
    return None
