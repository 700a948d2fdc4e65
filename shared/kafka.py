"""Kafka helpers: producers that wait for every in-sync replica, consumers that commit offsets
only when told to. Delivery across Perp-EX is at-least-once; consumers deduplicate by event id."""

from __future__ import annotations

from collections.abc import Sequence

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.errors import TopicAlreadyExistsError


def make_producer(bootstrap_servers: str, **overrides: object) -> AIOKafkaProducer:
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap_servers,
        "acks": "all",
        "linger_ms": 5,
        "request_timeout_ms": 10_000,
        # No idempotent producer: not every Kafka-protocol broker supports it (see TOOLCHAIN).
        "enable_idempotence": False,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)  # type: ignore[arg-type]


def make_consumer(
    bootstrap_servers: str,
    topics: Sequence[str],
    group_id: str | None,
    **overrides: object,
) -> AIOKafkaConsumer:
    options: dict[str, object] = {
        "bootstrap_servers": bootstrap_servers,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "session_timeout_ms": 6_000,
        "heartbeat_interval_ms": 500,
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)  # type: ignore[arg-type]


async def ensure_topic(bootstrap_servers: str, topic: str, partitions: int = 6) -> bool:
    """Create `topic` if missing. Returns True when it was created now."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap_servers)
    await admin.start()
    try:
        existing = await admin.list_topics()
        if topic in existing:
            return False
        try:
            await admin.create_topics(
                [NewTopic(topic, num_partitions=partitions, replication_factor=1)]
            )
        except TopicAlreadyExistsError:
            return False
        return True
    finally:
        await admin.close()
