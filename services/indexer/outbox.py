"""Outbox drainer: PostgreSQL outbox -> Kafka, at least once, in order.

Rows are taken in id order (= chain order within a chunk, chunks in commit order), packed into
per-partition record batches, sent with acks=all through one producer (which keeps
per-partition order), and marked sent only after every batch is acknowledged. The database
says which rows are unsent; their messages come from memory when the indexer handed them over
at commit (`offer`, up to a budget of messages), otherwise from the row or rebuilt from
`events` (after a restart, or when the budget was full during a broker outage): the policy is
`handoff.Handoff`, the reads `outbox_store.OutboxStore`. Any broker problem (down at start, lost mid-batch,
timeouts) closes the producer and retries the same rows with exponential backoff: a message can
be delivered twice (consumers deduplicate on event_id) but never lost. Indexing never waits for
the drainer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiokafka import AIOKafkaProducer

from services.indexer.handoff import Handoff
from services.indexer.outbox_rows import OutboxInconsistent, OutboxRow
from services.indexer.outbox_store import OutboxStore
from shared.events.keys import partition_for
from shared.kafka import ensure_topic, make_producer
from shared.telemetry import tracer

log = logging.getLogger(__name__)
_tracer = tracer("perpex.indexer.outbox")

ProducerFactory = Callable[[], AIOKafkaProducer]


class BrokerStateChanged(RuntimeError):
    """The broker no longer has what it acknowledged: resend the batch."""


class OutboxDrainer:
    def __init__(
        self,
        store: OutboxStore,
        bootstrap_servers: str,
        topic: str,
        batch: int = 2000,
        partitions: int = 6,
        poll_interval: float = 1.0,
        send_timeout: float = 30.0,
        max_backoff: float = 10.0,
        retention_s: float = 3600.0,
        producer_factory: ProducerFactory | None = None,
        memory_messages: int = 100_000,
        pairs: Mapping[str, str] | None = None,
    ):
        self.store = store
        self.bootstrap = bootstrap_servers
        self.topic = topic
        self.batch = batch
        self.partitions = partitions
        self.poll_interval = poll_interval
        self.send_timeout = send_timeout
        self.max_backoff = max_backoff
        self.retention_s = retention_s
        self._factory = producer_factory or (
            lambda: make_producer(
                bootstrap_servers,
                linger_ms=2,
                max_batch_size=256 * 1024,
                request_timeout_ms=int(send_timeout * 1000),
                retry_backoff_ms=200,
            )
        )
        self._producer: AIOKafkaProducer | None = None
        # key -> partition, for the partition list it was computed with
        self._partition_of: dict[bytes, int] = {}
        self._partitioned_for: list[int] = []
        self.handoff = Handoff(memory_messages)  # committed rows handed over, until sent
        self.pairs = dict(pairs or {})  # configured market pairs, for rebuilt messages
        self.per_round = 8 * batch  # messages sent per round
        self._topic_ready = False
        self._wake = asyncio.Event()
        self.sent = 0
        self.failures = 0
        self.connected = False
        self.idle = asyncio.Event()  # set whenever a poll found nothing to send
        self.last_error: str | None = None

    def notify(self) -> None:
        """New rows were committed: drain now instead of at the next poll."""
        self._wake.set()

    def offer(self, rows: list[OutboxRow]) -> None:
        """Committed outbox rows with their messages: kept (within the memory budget) so that
        sending them needs no read back from the database; then drain now."""
        self.handoff.offer(rows)
        self._wake.set()

    @property
    def held(self) -> bool:
        """The last round stopped at a row whose hand-over is awaited."""
        return self.handoff.held

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = self._factory()
            try:
                await asyncio.wait_for(producer.start(), self.send_timeout)
            except BaseException:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(producer.stop(), 5)
                raise
            self._producer = producer
        if not self._topic_ready:
            await asyncio.wait_for(
                ensure_topic(self.bootstrap, self.topic, self.partitions), self.send_timeout
            )
            self._topic_ready = True
        self.connected = True
        return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        self.connected = False
        self._topic_ready = False  # a restarted (in-memory) broker may have lost the topic
        if producer is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(producer.stop(), 5)

    async def drain_once(self) -> int:
        """Send one batch; returns how many rows were sent (0: nothing pending)."""
        rows = await self._next_rows()
        if not rows:
            return 0
        count = sum(len(r.messages) for r in rows)
        producer = await self._ensure_producer()
        with _tracer.start_as_current_span("kafka produce") as span:
            span.set_attribute("messaging.system", "kafka")
            span.set_attribute("messaging.destination.name", self.topic)
            span.set_attribute("messaging.batch.message_count", count)
            await asyncio.wait_for(self._send_all(producer, rows), self.send_timeout)
        ids = [r.id for r in rows]
        try:
            await self.store.mark_sent(ids)
        finally:
            # Sent: whether or not the UPDATE's reply arrives, memory lets them go (a row
            # still unsent in the database is rebuilt when read again: it was handed over).
            self.handoff.forget(ids)
        self.sent += count
        return count

    async def _next_rows(self) -> list[OutboxRow]:
        """The next rows to send: from memory where handed over, else read or rebuilt."""
        handoff = self.handoff
        if handoff.rebuild_upto is None:  # first look: rows before this process are rebuilt
            handoff.start_from(await self.store.last_id())
        async with self.store.snapshot() as snap:
            refs = handoff.sendable(await snap.unsent(self.per_round))
            kept = {r.id: handoff.memory[r.id] for r in refs if r.id in handoff.memory}
            read = await snap.messages([r for r in refs if r.id not in kept], self.pairs)
        return [kept.get(r.id) or OutboxRow(r.id, read[r.id], r.headers) for r in refs]

    async def _send_all(self, producer: AIOKafkaProducer, rows: list[OutboxRow]) -> None:
        """Send every message of `rows`, keeping order per partition. Messages are packed into
        record batches per partition (aiokafka's batch API) with the default partitioner
        (shared.events.keys.partition_for: the same key -> partition mapping as producer.send,
        and as the keeper's ownership of positions), which costs a fraction of one
        producer.send per message. A partition's next batch is handed to the producer only
        once the previous one is acknowledged (the producer sends one batch per partition at a
        time anyway): were a batch to fail, a later one must not reach the partition before it
        is sent again, or a consumer would see a position's later event first."""
        topic = self.topic
        partitions = sorted(producer.client.cluster.partitions_for_topic(topic) or ())
        if not partitions:
            await producer.client.force_metadata_update()
            partitions = sorted(producer.client.cluster.partitions_for_topic(topic) or ())
        if not partitions:
            raise BrokerStateChanged(f"topic {topic} has no partitions")
        if partitions != self._partitioned_for or len(self._partition_of) > 200_000:
            self._partition_of = {}
            self._partitioned_for = partitions
        by_key = self._partition_of
        batches: dict[int, list[Any]] = {}
        for row in rows:
            headers = row.headers
            for _, key, value in row.messages:
                part = by_key.get(key)
                if part is None:
                    part = by_key[key] = partition_for(key, partitions)
                queue = batches.get(part)
                if queue is None:
                    queue = batches[part] = [producer.create_batch()]
                if queue[-1].append(key=key, value=value, timestamp=None, headers=headers) is None:
                    batch = producer.create_batch()
                    if batch.append(key=key, value=value, timestamp=None, headers=headers) is None:
                        raise ValueError(f"message {len(value)} bytes exceeds max_batch_size")
                    queue.append(batch)

        async def send_in_turn(part: int, queue: list[Any]) -> list[Any]:
            acks = []
            for batch in queue:
                acks.append(await (await producer.send_batch(batch, topic, partition=part)))
            return acks

        try:
            async with asyncio.TaskGroup() as group:  # the first failure cancels the others
                tasks = [group.create_task(send_in_turn(p, q)) for p, q in batches.items()]
        except ExceptionGroup as failed:
            raise failed.exceptions[0] from None
        acks = [m for t in tasks for m in t.result()]
        # Trust the acks only if the partitions written still exist. A broker that lost its
        # state (e.g. an in-memory broker restarted during the batch) can acknowledge writes
        # to partitions the producer remembered from before; those are resent.
        written = {m.partition for m in acks}
        await producer.client.force_metadata_update()
        known: set[int] = set(producer.client.cluster.partitions_for_topic(self.topic) or ())
        if not written <= known:
            raise BrokerStateChanged(
                f"topic {self.topic} has partitions {sorted(known)}, "
                f"acks named {sorted(written - known)}"
            )

    async def run(self, stop: asyncio.Event) -> None:
        """Drain until `stop` is set (then one last attempt to flush what is pending)."""
        failures = 0
        last_purge = time.monotonic()
        while not stop.is_set():
            self._wake.clear()  # before reading: a notify during the batch is not lost
            try:
                sent = await self.drain_once()
                failures = 0
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = min(self.max_backoff, 0.2 * 2 ** min(failures, 10))
                delay *= random.uniform(0.8, 1.2)
                if isinstance(exc, OutboxInconsistent):
                    log.error(
                        "outbox: %s; nothing after this row can be sent until it is repaired "
                        "(see docs/indexer.md, Operations)",
                        exc,
                    )
                else:
                    log.warning(
                        "outbox: send failed (%s); retrying in %.1fs", self.last_error, delay
                    )
                await self._drop_producer()
                await _wait(stop, delay)
                continue
            if sent == 0:
                if not self.held:
                    self.idle.set()
                if time.monotonic() - last_purge > 60:
                    last_purge = time.monotonic()
                    with contextlib.suppress(Exception):
                        await self.store.purge_sent(self.retention_s)
                await _wait_any(stop, self._wake, self.poll_interval)
            else:
                self.idle.clear()

    async def flush(self, within: float) -> bool:
        """Best effort: drain what is pending within `within` seconds (used at shutdown)."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            try:
                sent = await asyncio.wait_for(self.drain_once(), deadline - time.monotonic())
                if sent == 0 and not self.held:
                    return True
                if sent == 0:
                    await asyncio.sleep(0.05)  # a hand-over is on its way
            except Exception as exc:  # broker down at shutdown: rows stay in the outbox
                log.info("outbox: not flushed at shutdown (%s); rows stay queued", exc)
                return False
        return False

    async def close(self) -> None:
        await self._drop_producer()


async def _wait(stop: asyncio.Event, delay: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)


async def _wait_any(stop: asyncio.Event, wake: asyncio.Event, delay: float) -> None:
    waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(wake.wait())]
    try:
        await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()
