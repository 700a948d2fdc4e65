"""Read every partition of the events topic from its end: a live view, not a durable reader.

The consumer joins no group (group_id None: no offsets committed, no rebalancing with other
replicas): it assigns itself every partition of the topic, positioned at the end, so from then
on each process sees every event published (the dashboard's /ws feed, every funding updater
replica). Partitions the topic gains later are followed from their end as well. While the topic
does not exist yet, it is looked for every `topic_poll_s` for `topic_wait_s`, then the attempt
counts as a failure. Any failure closes the consumer and retries with a jittered exponential
backoff. Delivery is at-least-once: callers deduplicate (shared.events.dedup).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition

from shared.kafka import make_consumer

ConsumerFactory = Callable[[], Any]  # an AIOKafkaConsumer, or a stand-in with its methods
RecordHandler = Callable[[Any], object]  # one ConsumerRecord (value, headers, ...)


def tail_consumer(bootstrap_servers: str, **overrides: object) -> AIOKafkaConsumer:
    """A consumer in no group and with no subscription: TopicTail assigns the partitions."""
    options: dict[str, object] = {
        "auto_offset_reset": "latest",
        "request_timeout_ms": 15_000,
        "metadata_max_age_ms": 15_000,  # how soon new partitions are seen
    }
    options.update(overrides)
    return make_consumer(bootstrap_servers, [], None, **options)


def backoff_delay(failures: int, max_backoff: float) -> float:
    """Seconds to wait after `failures` failures in a row: 1, 2, 4, ... up to max_backoff,
    +-20 % so that replicas do not retry in step."""
    return min(max_backoff, 0.5 * 2 ** min(failures, 8)) * random.uniform(0.8, 1.2)


class TopicTail:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        on_record: RecordHandler,
        consumer_factory: ConsumerFactory | None = None,
        max_backoff: float = 30.0,
        topic_wait_s: float = 10.0,
        topic_poll_s: float = 0.5,
        logger: logging.Logger | None = None,
    ):
        self.topic = topic
        self.on_record = on_record
        self._factory = consumer_factory or (lambda: tail_consumer(bootstrap_servers))
        self.max_backoff = max_backoff
        self.topic_wait_s = topic_wait_s
        self.topic_poll_s = topic_poll_s
        self.log = logger or logging.getLogger(__name__)
        self.connected = False  # every partition assigned and positioned
        self.failures = 0  # in a row
        self.last_error: str | None = None  # of the last failure, until the next connection

    async def run(self, stop: asyncio.Event | None = None) -> None:
        """Read until `stop` is set (or the task is cancelled), reconnecting after failures."""
        stop = stop or asyncio.Event()
        while not stop.is_set():
            consumer = self._factory()
            try:
                await consumer.start()
                await self._assign(consumer)
                self.connected = True
                self.failures = 0
                self.last_error = None
                self.log.info("reading every partition of %s from its end", self.topic)
                while not stop.is_set():
                    batches = await consumer.getmany(timeout_ms=500, max_records=500)
                    for records in batches.values():
                        for record in records:
                            self.on_record(record)
                    await self._follow_new_partitions(consumer)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.connected = False
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = backoff_delay(self.failures, self.max_backoff)
                self.log.warning(
                    "kafka %s: %s; retrying in %.1fs", self.topic, self.last_error, delay
                )
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), 5)

    async def _partitions(self, consumer: Any) -> set[int]:
        """The topic's partitions, waiting up to topic_wait_s for the topic to appear."""
        deadline = time.monotonic() + self.topic_wait_s
        while True:
            await consumer.topics()  # refresh the cluster metadata
            partitions = consumer.partitions_for_topic(self.topic)
            if partitions:
                return set(partitions)
            if time.monotonic() >= deadline:
                raise LookupError(f"topic {self.topic} does not exist (yet)")
            await asyncio.sleep(self.topic_poll_s)

    async def _assign(
        self,
        consumer: Any,
        partitions: set[int] | None = None,
        keep: dict[TopicPartition, int] | None = None,
    ) -> None:
        """Take every partition of the topic: those in `keep` at their offsets, the others at
        their end, resolved now (so every event published from here on is read)."""
        if partitions is None:
            partitions = await self._partitions(consumer)
        keep = keep or {}
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        fresh = [tp for tp in tps if tp not in keep]
        for tp, offset in keep.items():
            consumer.seek(tp, offset)
        if fresh:
            await consumer.seek_to_end(*fresh)
        for tp in fresh:
            await consumer.position(tp)

    async def _follow_new_partitions(self, consumer: Any) -> None:
        partitions = set(consumer.partitions_for_topic(self.topic) or ())
        assigned = {tp.partition for tp in consumer.assignment()}
        if partitions - assigned:
            keep = {tp: await consumer.position(tp) for tp in consumer.assignment()}
            self.log.info("%s has new partitions %s", self.topic, sorted(partitions - assigned))
            await self._assign(consumer, partitions | assigned, keep)
