"""The dashboard's one Kafka consumer: new events from KAFKA_TOPIC -> Hub -> every /ws client.

Each dashboard process reads every partition itself, from its end, in no consumer group
(shared.events.tail): a live view, not a durable reader; history comes from PostgreSQL through
the HTTP API.

Delivery on Kafka is at-least-once, so a recently seen delivery (shared.events.dedup: event id,
block hash, reverted) is not pushed twice. Malformed messages are counted and skipped.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

from services.dashboard.hub import Hub
from services.dashboard.live_format import format_event
from shared.events.dedup import DeliveryKey, RecentKeys, delivery_key
from shared.events.schema import MalformedEventError, decode_event
from shared.events.tail import ConsumerFactory, TopicTail
from shared.telemetry import context_from_headers, tracer

log = logging.getLogger("perpex.dashboard.feed")


def event_message(raw: bytes | str) -> tuple[DeliveryKey, dict[str, Any]]:
    """A Kafka value -> (dedup key, the /ws message). Raises MalformedEventError."""
    event = decode_event(raw)
    return delivery_key(event), {"type": "event", "event": format_event(event)}


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
        self.topic = topic
        self.hub = hub
        self.tail = TopicTail(
            bootstrap_servers,
            topic,
            lambda record: self.handle(record.value, record.headers),
            consumer_factory=consumer_factory,
            topic_wait_s=assignment_timeout,
            logger=log,
        )
        self.before_push = before_push  # e.g. drop cached API answers the event makes stale
        self.consumed = 0
        self.pushed = 0
        self.duplicates = 0
        self.malformed = 0
        self.last_event_at: float | None = None
        self._recent = RecentKeys()
        self._tracer = tracer("perpex.dashboard")

    @property
    def live(self) -> bool:
        return self.tail.connected

    @property
    def last_error(self) -> str | None:
        return self.tail.last_error

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
        await self.tail.run()

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
            if not self._recent.new_delivery(key):  # a revert makes its event new again
                self.duplicates += 1
                return False
            span.set_attribute("perpex.event_id", key[0])
            if self.before_push is not None:
                self.before_push()
            self.hub.publish(json.dumps(message, separators=(",", ":")))
        self.pushed += 1
        self.last_event_at = time.monotonic()
        return True
