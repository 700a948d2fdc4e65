"""Reorg detection: compare the block hashes the indexer stored with the canonical chain.

Pure logic. The indexer keeps the hashes of recent blocks it indexed (chunk ends and every block
that held one of its logs, within REORG_WINDOW blocks of the last synced block). Before indexing
more, it asks the node for the canonical hashes of those blocks; the newest block whose hash
still matches is the common ancestor and everything after it is rolled back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import Enum


class ReorgKind(Enum):
    NONE = "none"  # newest stored block is still canonical
    REORG = "reorg"  # roll back everything after `ancestor_block`
    TOO_DEEP = "too_deep"  # no stored block is canonical any more: deeper than the window


@dataclass(frozen=True)
class ReorgDecision:
    kind: ReorgKind
    ancestor_block: int | None = None  # newest stored block that is still canonical
    ancestor_hash: str | None = None
    first_removed_block: int | None = None  # ancestor_block + 1: first block to roll back

    @property
    def depth_hint(self) -> str:
        return "" if self.first_removed_block is None else f"from block {self.first_removed_block}"


def _norm(h: str | None) -> str | None:
    return h.lower() if h else None


def head_matches(stored_hash: str | None, canonical_hash: str | None) -> bool:
    """True when the stored hash of the last synced block is still the canonical one."""
    return stored_hash is not None and _norm(stored_hash) == _norm(canonical_hash)


def decide(
    stored: Sequence[tuple[int, str]],
    canonical: Mapping[int, str | None],
) -> ReorgDecision:
    """Find the common ancestor.

    `stored`: (block number, hash) pairs the indexer kept, any order.
    `canonical`: block number -> the node's hash now (None: the node has no such block, e.g. the
    chain got shorter). Blocks missing from `canonical` count as not matching.
    """
    if not stored:
        return ReorgDecision(ReorgKind.NONE)
    ordered = sorted(stored, key=lambda item: item[0], reverse=True)
    newest_block, newest_hash = ordered[0]
    if head_matches(newest_hash, canonical.get(newest_block)):
        return ReorgDecision(ReorgKind.NONE, newest_block, newest_hash)
    for number, block_hash in ordered[1:]:
        if head_matches(block_hash, canonical.get(number)):
            return ReorgDecision(ReorgKind.REORG, number, _norm(block_hash), number + 1)
    return ReorgDecision(ReorgKind.TOO_DEEP)


def window_floor(last_block: int, window: int) -> int:
    """Oldest block number whose hash is kept when the last synced block is `last_block`."""
    return max(0, last_block - window + 1)
