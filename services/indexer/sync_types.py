"""The sync loop's chunks in flight, its errors and its statistics (services/indexer/sync.py)."""

from __future__ import annotations

import asyncio
import time
from collections import Counter, deque
from dataclasses import dataclass, field

from services.indexer.fetcher import FetchResult
from services.indexer.rpc import BlockHeader


class ReorgTooDeepError(RuntimeError):
    """No stored block hash is canonical any more: the reorg is deeper than REORG_WINDOW."""


class ReorgInFlight(Exception):
    """The chunk's logs disagree with its headers: the chain changed while fetching."""


@dataclass
class FetchedChunk:
    from_block: int
    to_block: int
    head: int
    parent: BlockHeader | None  # header of from_block - 1 (None when not checked)
    headers: dict[int, BlockHeader]
    decoding: asyncio.Future[FetchResult]  # decoded on the decode thread meanwhile
    fetched_at: float = field(default_factory=time.monotonic)


@dataclass
class IndexerStats:
    head: int | None = None
    last_block: int | None = None
    events: int = 0
    chunks: int = 0
    reorgs: int = 0
    reverted_events: int = 0
    decode_failures: Counter[str] = field(default_factory=Counter)
    rpc_errors: Counter[str] = field(default_factory=Counter)
    filtered: int = 0
    orphans: int = 0
    started: float = field(default_factory=time.monotonic)
    _recent: deque[tuple[float, int]] = field(default_factory=lambda: deque(maxlen=64))

    @property
    def lag(self) -> int | None:
        if self.head is None or self.last_block is None:
            return None
        return max(0, self.head - self.last_block)

    def record_events(self, n: int) -> None:
        self.events += n
        self._recent.append((time.monotonic(), self.events))

    @property
    def events_per_s(self) -> float:
        if len(self._recent) < 2:
            return 0.0
        (t0, n0), (t1, n1) = self._recent[0], self._recent[-1]
        return (n1 - n0) / (t1 - t0) if t1 > t0 else 0.0
