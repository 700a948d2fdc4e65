"""The dashboard's one Kafka consumer: new events from KAFKA_TOPIC -> Hub -> every /ws client.

No consumer group (group_id=None): each dashboard process reads every partition itself, starting
at the latest offset, commits nothing and never rebalances with other replicas. It is a live
view, not a durable reader: history comes from PostgreSQL through the HTTP API.

Delivery on Kafka is at-least-once, so a recently seen (event_id, block hash, reverted) is not
pushed twice (a transaction re-mined in another block after a reorg keeps its event id: it is
a new event). Malformed messages are counted and skipped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

from aiokafka import AIOKafkaConsumer

from services.dashboard.hub import Hub
from services.dashboard.live_format import format_event
from shared.events.schema import MalformedEventError, decode_event
from shared.kafka import make_consumer
from shared.telemetry import context_from_headers, tracer

log = logging.getLogger("perpex.dashboard.feed")

ConsumerFactory = Callable[[], AIOKafkaConsumer]


class RecentIds:
    """A bounded set remembering the last `size` keys added."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def seen(self, key: Hashable) -> bool:
        """True when `key` was added before; otherwise remember it and return False."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return False


def event_message(raw: bytes | str) -> tuple[tuple[str, str, bool], dict[str, Any]]:
    """A Kafka value -> (dedup key, the /ws message). Raises MalformedEventError."""
    event = decode_event(raw)
    key = (event.event_id, event.block_hash, event.reverted)
    return key, {"type": "event", "event": format_event(event)}


class KafkaFeed:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        hub: Hub,
        consumer_factory: ConsumerFactory | None = None,
        assignment_timeout: float = 10.0,
        before_push: Callable[[], None] | None = None,
    ):
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.hub = hub
        self._factory = consumer_factory or self._default_consumer
        self.assignment_timeout = assignment_timeout
        self.before_push = before_push  # e.g. drop cached API answers the event makes stale
        self.live = False
        self.consumed = 0
        self.pushed = 0
        self.duplicates = 0
        self.malformed = 0
        self.last_event_at: float | None = None
        self.last_error: str | None = None
        self._recent = RecentIds()
        self._tracer = tracer("perpex.dashboard")

    def _default_consumer(self) -> AIOKafkaConsumer:
        return make_consumer(
            self.bootstrap_servers,
            [self.topic],
            group_id=None,
            auto_offset_reset="latest",
            metadata_max_age_ms=15_000,
        )

    def status(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "live": self.live,
            "consumed": self.consumed,
            "pushed": self.pushed,
            "duplicates": self.duplicates,
            "malformed": self.malformed,
            "seconds_since_last_event": (
                None if self.last_event_at is None else time.monotonic() - self.last_event_at
            ),
            "last_error": self.last_error,
        }

    async def run(self) -> None:
        """Consume until cancelled, reconnecting with backoff after failures."""
        backoff = 0.5
        while True:
            consumer = self._factory()
            try:
                await consumer.start()
                await self._pin_latest(consumer)
                self.last_error = None
                backoff = 0.5
                while True:
                    batches = await consumer.getmany(timeout_ms=500, max_records=500)
                    self.live = bool(consumer.assignment())
                    for messages in batches.values():
                        for message in messages:
                            self.handle(message.value, message.headers)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.live = False
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("Kafka feed failed (%s); retrying in %.1fs", self.last_error, backoff)
            finally:
                self.live = False
                with contextlib.suppress(Exception):
                    await consumer.stop()
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 30.0)

    async def _pin_latest(self, consumer: AIOKafkaConsumer) -> None:
        """Resolve 'latest' now, so every event published from here on is pushed."""
        deadline = time.monotonic() + self.assignment_timeout
        while not consumer.assignment() and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        for tp in consumer.assignment():
            await consumer.position(tp)
        self.live = bool(consumer.assignment())
        if not self.live:
            log.warning("topic %s has no partitions yet; waiting for it to appear", self.topic)

    def handle(self, value: bytes | None, headers: Any = None) -> bool:
        """Decode one Kafka value and publish it. Returns True when it was pushed."""
        self.consumed += 1
        if value is None:
            self.malformed += 1
            return False
        with self._tracer.start_as_current_span(
            "dashboard.push", context=context_from_headers(headers)
        ) as span:
            try:
                key, message = event_message(value)
            except (MalformedEventError, ValueError, TypeError, OverflowError) as exc:
                # any message the page cannot show is skipped, never the end of the feed
                self.malformed += 1
                log.warning("skipping malformed event: %s", exc)
                span.set_attribute("perpex.malformed", True)
                return False
            if self._recent.seen(key):
                self.duplicates += 1
                return False
            span.set_attribute("perpex.event_id", key[0])
            if self.before_push is not None:
                self.before_push()
            self.hub.publish(json.dumps(message, separators=(",", ":")))
        self.pushed += 1
        self.last_event_at = time.monotonic()
        return True
