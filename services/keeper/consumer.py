"""Kafka side of the keeper: a consumer-group member that keeps the book current.

Start-up and every rebalance: the partitions assigned to this replica decide which positions it
owns (partitions.Ownership). On assignment it reads the partitions' end offsets, *then* loads
the owned open positions from the indexer's PostgreSQL tables, then seeks to those offsets:
the indexer writes PostgreSQL before it publishes (transactional outbox), so every event
before the recorded offsets is already in the snapshot, and a new replica never replays the
topic's history. Events after them may also be in the snapshot; applying them again is
harmless (the book skips duplicates and stale events). On revocation it stops liquidating the
revoked partitions' positions and waits for their broadcast liquidations to be mined before the
group moves them, so two replicas never work on one position, and commits its offsets.

The loop applies each message inside a span whose parent is the trace context in the message
headers (the indexer span that published it), commits offsets after applying a batch, and
skips (logs and counts) messages that are not valid event envelopes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import KafkaError
from opentelemetry.trace import SpanKind

from services.keeper.book import ApplyResult, PositionBook
from services.keeper.metrics import KeeperMetrics
from services.keeper.partitions import Ownership
from shared.events.schema import MalformedEventError, decode_event
from shared.kafka import make_consumer
from shared.telemetry import context_from_headers, trace_carrier, tracer

log = logging.getLogger(__name__)
_tracer = tracer("perpex.keeper")

AssignHook = Callable[[Ownership, set[int]], Awaitable[None]]
RevokeHook = Callable[[Ownership, set[int]], Awaitable[None]]
ResultHook = Callable[[list[ApplyResult]], Awaitable[None]]


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, owner: EventConsumer):
        self.owner = owner

    async def on_partitions_revoked(self, revoked: Any) -> None:
        await self.owner._on_revoked(set(revoked))

    async def on_partitions_assigned(self, assigned: Any) -> None:
        await self.owner._on_assigned(set(assigned))


class EventConsumer:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        group_id: str,
        book: PositionBook,
        on_assigned: AssignHook,
        on_revoked: RevokeHook,
        on_results: ResultHook,
        metrics: KeeperMetrics | None = None,
        max_records: int = 2000,
    ):
        self.topic = topic
        self.book = book
        self.on_assigned = on_assigned
        self.on_revoked = on_revoked
        self.on_results = on_results
        self.metrics = metrics
        self.max_records = max_records
        self.consumer: AIOKafkaConsumer = make_consumer(
            bootstrap_servers,
            [],
            group_id,
            max_poll_interval_ms=300_000,
            rebalance_timeout_ms=60_000,
        )
        self.ownership = Ownership()
        self.assigned: set[TopicPartition] = set()
        self.assignments = 0  # completed assignments (>= 1: bootstrapped)
        self._offsets: dict[TopicPartition, int] = {}  # next offset to commit
        self.stats = {"applied": 0, "duplicate": 0, "stale": 0, "ignored": 0, "malformed": 0}

    async def start(self) -> None:
        await self.consumer.start()
        self.consumer.subscribe(topics=[self.topic], listener=_Listener(self))

    # ---- rebalance ----
    async def _on_assigned(self, assigned: set[TopicPartition]) -> None:
        partitions = self.consumer.partitions_for_topic(self.topic) or set()
        count = len(partitions) or (max((tp.partition for tp in assigned), default=-1) + 1)
        owned = {tp.partition for tp in assigned if tp.topic == self.topic}
        ownership = self.ownership.with_partitions(count, owned)
        # End offsets first, then the snapshot: everything before them is in PostgreSQL.
        ends: dict[TopicPartition, int] = {}
        if assigned:
            ends = await self.consumer.end_offsets(list(assigned))
        self.ownership = ownership
        await self.on_assigned(ownership, owned)
        for tp in assigned:
            self.consumer.seek(tp, ends.get(tp, 0))
            self._offsets[tp] = ends.get(tp, 0)
        self.assigned = set(assigned)
        self.assignments += 1
        log.info(
            "assigned partitions %s of %d (%d positions in the book)",
            sorted(owned),
            count,
            len(self.book),
        )
        await self.commit()

    async def _on_revoked(self, revoked: set[TopicPartition]) -> None:
        parts = {tp.partition for tp in revoked if tp.topic == self.topic}
        if not parts:
            return
        await self.on_revoked(self.ownership, parts)
        await self.commit()
        self.ownership = self.ownership.with_partitions(
            self.ownership.partitions, self.ownership.owned - parts
        )
        self.assigned -= revoked
        for tp in revoked:
            self._offsets.pop(tp, None)
        log.info("revoked partitions %s", sorted(parts))

    # ---- loop ----
    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                batch = await self.consumer.getmany(timeout_ms=200, max_records=self.max_records)
            except KafkaError as exc:
                log.warning("kafka: %s; retrying", exc)
                await _wait(stop, 1.0)
                continue
            if not batch:
                continue
            results: list[ApplyResult] = []
            for tp, records in batch.items():
                if tp not in self.assigned:
                    continue
                for rec in records:
                    result = self._apply(rec)
                    if result is not None:
                        results.append(result)
                self._offsets[tp] = records[-1].offset + 1
            if results:
                await self.on_results(results)
            await self.commit()

    def _apply(self, rec: Any) -> ApplyResult | None:
        with _tracer.start_as_current_span(
            "keeper consume",
            context=context_from_headers(rec.headers),
            kind=SpanKind.CONSUMER,
            attributes={
                "messaging.system": "kafka",
                "messaging.destination.name": self.topic,
                "messaging.kafka.partition": rec.partition,
                "messaging.kafka.offset": rec.offset,
            },
        ) as span:
            try:
                event = decode_event(rec.value)
            except MalformedEventError as exc:
                self.stats["malformed"] += 1
                if self.metrics:
                    self.metrics.malformed_events.add(1)
                log.warning(
                    "skipping malformed message at %s[%d]@%d: %s",
                    rec.topic,
                    rec.partition,
                    rec.offset,
                    exc,
                )
                span.set_attribute("perpex.malformed", True)
                return None
            span.set_attribute("perpex.event", event.name)
            if event.token_id is not None:
                span.set_attribute("perpex.token_id", event.token_id)
            try:
                result = self.book.apply(event, trace=trace_carrier())
            except (KeyError, TypeError, ValueError) as exc:
                # A valid envelope whose args do not fit its event (a field missing, say):
                # skipped and counted like any malformed message, never fatal.
                self.stats["malformed"] += 1
                if self.metrics:
                    self.metrics.malformed_events.add(1)
                log.warning(
                    "skipping %s at %s[%d]@%d: its args do not fit (%s: %s)",
                    event.name,
                    rec.topic,
                    rec.partition,
                    rec.offset,
                    type(exc).__name__,
                    exc,
                )
                span.set_attribute("perpex.malformed", True)
                return None
            self.stats[result.status] = self.stats.get(result.status, 0) + 1
            if self.metrics:
                self.metrics.events.add(1, {"outcome": result.status, "event": event.name})
            return result

    async def commit(self) -> None:
        offsets = {tp: off for tp, off in self._offsets.items() if tp in self.assigned}
        if not offsets:
            return
        try:
            await self.consumer.commit(offsets)
        except Exception as exc:  # a rebalance in progress: the next owner re-bootstraps
            log.info("offset commit skipped: %s", exc)

    async def stop(self) -> None:
        await self.commit()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.consumer.stop(), 15)


async def _wait(stop: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
