"""The indexer's metrics (OpenTelemetry; OTLP when configured, /metrics on HEALTH_PORT always:
docs/observability.md).

Sync loop (`register(indexer)`):
- perpex_indexer_blocks_behind        gauge: head - CONFIRMATIONS - last synced block (0: caught up)
- perpex_indexer_lag_blocks           gauge: head - last synced block
- perpex_indexer_head_block           gauge: the node's head at the last round
- perpex_indexer_last_block           gauge: last block committed
- perpex_indexer_events_per_second    gauge: recent indexing rate (rate() of the counter is better)
- perpex_indexer_chunk_size_blocks    gauge: current eth_getLogs span
- perpex_indexer_events               counter: decoded events committed
- perpex_indexer_decode_failures      counter: unknown or malformed logs
- perpex_indexer_reorgs               counter: reorgs rolled back
- perpex_indexer_reorg_depth_blocks   histogram: blocks rolled back per reorg

Outbox (`OutboxMonitor`, sampled from PostgreSQL every few seconds):
- perpex_indexer_outbox_backlog                   gauge: messages not yet acknowledged by the broker
- perpex_indexer_outbox_oldest_unsent_age_seconds gauge: age of the oldest unsent row (0: none)
- perpex_indexer_outbox_sent                      counter: messages the broker acknowledged

Each gauge reads the most recent Indexer / drainer registered in the process.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from opentelemetry import metrics

from shared.metrics import observe
from shared.telemetry import meter

log = logging.getLogger(__name__)
REORG_DEPTH_BUCKETS = (1, 2, 3, 5, 10, 20, 50, 100, 250)
_OUTBOX_SQL = (
    "SELECT coalesce(sum(message_count), 0) AS backlog, "
    "coalesce(extract(epoch FROM now() - min(created_at)), 0) AS age "
    "FROM outbox WHERE sent_at IS NULL"
)


class _Current:
    """What the gauges read: the latest indexer and outbox monitor of this process."""

    provider: Any = None
    indexer: Any = None
    outbox: OutboxMonitor | None = None
    counters: tuple[Any, Any, Any, Any] | None = None


def _instruments() -> tuple[Any, Any, Any, Any]:
    """(events counter, decode failures counter, reorgs counter, reorg depth histogram), the
    gauges beside them; made once per meter provider."""
    provider = metrics.get_meter_provider()
    if _Current.provider is provider and _Current.counters is not None:
        return _Current.counters
    m = meter("perpex.indexer")

    def stats() -> Any:
        return None if _Current.indexer is None else _Current.indexer.stats

    def behind() -> int | None:
        ix = _Current.indexer
        if ix is None or ix.stats.head is None:
            return None
        return max(0, ix.stats.head - ix.settings.confirmations - ix.last_block)

    gauges = {
        "perpex_indexer_blocks_behind": (behind, "head - CONFIRMATIONS - last synced block"),
        "perpex_indexer_lag_blocks": (lambda: stats() and stats().lag, "head - last synced"),
        "perpex_indexer_head_block": (lambda: stats() and stats().head, "the node's head"),
        "perpex_indexer_last_block": (
            lambda: None if _Current.indexer is None else _Current.indexer.last_block,
            "last block committed",
        ),
        "perpex_indexer_events_per_second": (
            lambda: stats() and stats().events_per_s,
            "recent indexing rate",
        ),
        "perpex_indexer_chunk_size_blocks": (
            lambda: None if _Current.indexer is None else _Current.indexer.policy.size,
            "current eth_getLogs span",
        ),
        "perpex_indexer_outbox_backlog": (
            lambda: None if _Current.outbox is None else _Current.outbox.backlog,
            "messages not yet acknowledged by the broker",
        ),
        "perpex_indexer_outbox_oldest_unsent_age_seconds": (
            lambda: None if _Current.outbox is None else _Current.outbox.oldest_age_s,
            "age of the oldest outbox row not yet sent (0: none)",
        ),
    }
    for name, (fn, description) in gauges.items():
        m.create_observable_gauge(name, [observe(fn)], description=description)
    m.create_observable_counter(
        "perpex_indexer_outbox_sent",
        [observe(lambda: None if _Current.outbox is None else _Current.outbox.drainer.sent)],
        description="messages the broker acknowledged",
    )
    _Current.counters = (
        m.create_counter("perpex_indexer_events", description="decoded events committed"),
        m.create_counter("perpex_indexer_decode_failures", description="unknown or malformed logs"),
        m.create_counter("perpex_indexer_reorgs", description="reorgs rolled back"),
        m.create_histogram(
            "perpex_indexer_reorg_depth_blocks",
            description="blocks rolled back per reorg",
            explicit_bucket_boundaries_advisory=REORG_DEPTH_BUCKETS,
        ),
    )
    for counter in _Current.counters[:3]:
        counter.add(0)  # exported at 0 from the start, not only after the first one
    _Current.provider = provider
    return _Current.counters


def register(indexer: Any) -> tuple[Any, Any, Any, Any]:
    """Report `indexer` (services.indexer.sync.Indexer) from now on; its instruments."""
    _Current.indexer = indexer
    return _instruments()


class OutboxMonitor:
    """Samples the outbox's backlog and the age of its oldest unsent row from PostgreSQL."""

    def __init__(self, pool: Any, drainer: Any, every_s: float = 5.0):
        self.pool = pool
        self.drainer = drainer
        self.every_s = every_s
        self.backlog: int | None = None
        self.oldest_age_s: float | None = None
        _Current.outbox = self
        _instruments()

    async def sample(self) -> None:
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(_OUTBOX_SQL)
        self.backlog = int(row["backlog"])
        self.oldest_age_s = float(row["age"])

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                await self.sample()
            except Exception as exc:  # PostgreSQL away: the dependency watch says so
                log.debug("outbox sample failed: %s", exc)
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(stop.wait(), self.every_s)
