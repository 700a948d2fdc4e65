"""The cyclic garbage collector paused while the indexer backfills (services/indexer/sync.py)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """The cyclic GC off for a sync round (until caught up): decoding allocates several
    container objects per log, all acyclic and freed by reference counting, and the
    collections they triggered rescanned every chunk still in flight again and again (about a
    seventh of the indexer's CPU in the backfill). The round runs a full collection itself every
    GC_EVERY_CHUNKS chunks (`collect_every`), so the odd cycle (an exception's traceback, the
    drainer's retries during a broker outage) is still freed during a long backfill."""
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


GC_EVERY_CHUNKS = 32


def collect_every(chunks: int) -> None:
    if chunks % GC_EVERY_CHUNKS == 0 and not gc.isenabled():
        gc.collect()
