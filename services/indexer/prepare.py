"""Pure steps of preparing a chunk for its transaction (services/indexer/sync.py): the block
hashes it vouches for, the positions it needs from the database, and its events encoded as
Kafka messages and COPY lines."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping

from services.indexer.copy_text import event_line
from services.indexer.decode import DecodedLog
from services.indexer.outbox_rows import Message
from services.indexer.rows import POSITION_FOLLOWUPS
from services.indexer.rpc import BlockHeader
from services.indexer.sync_types import ReorgInFlight
from shared.events.names import EventName

# Preparing a chunk is CPU work on the event loop's thread; it gives the loop a turn every
# YIELD_EVERY logs so the previous chunk's transaction (asyncpg's COPY is encoded and sent from
# this thread too), the prefetch and the outbox drainer progress in parallel with it instead of
# stalling until the whole chunk is prepared (PostgreSQL, anvil and the broker run on the other
# core meanwhile).
YIELD_EVERY = 500


def chunk_hashes(
    headers: Mapping[int, BlockHeader], events: Iterable[DecodedLog]
) -> dict[int, str]:
    """Block number -> hash from the chunk's headers and logs; ReorgInFlight when a log names
    another hash than its block's header (the chain changed while fetching)."""
    hashes: dict[int, str] = {n: h.hash for n, h in headers.items()}
    for e in events:
        known = hashes.get(e.block_number)
        if known is not None and known != e.block_hash:
            raise ReorgInFlight(f"block {e.block_number}: log hash differs from header")
        hashes.setdefault(e.block_number, e.block_hash)
    return hashes


def positions_needed(events: Iterable[DecodedLog]) -> set[int]:
    """Positions the chunk changes without opening them: their rows come from before it."""
    events = list(events)
    opened = {e.token_id for e in events if e.name == EventName.PositionOpened}
    return {
        e.token_id for e in events if e.name in POSITION_FOLLOWUPS and e.token_id is not None
    } - opened


async def encode_events(
    events: list[DecodedLog],
    chain_id: int,
    pairs: Mapping[str, str],
    trace: str | None,
    funding_index_at: Mapping[tuple[int, int], int],
) -> tuple[list[Message], list[str]]:
    """The chunk's Kafka messages and `events` COPY lines, in chain order; the event loop gets
    a turn every YIELD_EVERY events."""
    messages: list[Message] = []
    copy_lines: list[str] = []
    for i, e in enumerate(events):
        if not i % YIELD_EVERY and i:
            await asyncio.sleep(0)
        pair = None if e.market_id is None else pairs.get(e.market_id)
        value = e.encode(chain_id, pair, trace)
        messages.append((e.event_id(chain_id), e.key(chain_id), value))
        copy_lines.append(event_line(chain_id, e, funding_index_at))
    return messages, copy_lines
