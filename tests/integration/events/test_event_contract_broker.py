"""The event contract against the real broker: keys land on the partition the keeper's
ownership expects, and the all-partitions reader (dashboard feed, funding listener) reads
every partition from its end and waits for a topic that does not exist yet. (Following the
partitions a topic gains is a unit test: this broker cannot add partitions.)"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

from services.keeper.partitions import Ownership
from shared.events.keys import market_key, partition_for, token_key
from shared.events.tail import TopicTail
from shared.kafka import ensure_topic, make_producer


async def _wait(check: Callable[[], bool], what: str, within: float = 20.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not check():
        assert asyncio.get_running_loop().time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def _publish(bootstrap: str, topic: str, keys: list[bytes], tag: str) -> dict[bytes, int]:
    """One message per key, valued `<tag>:<key>`; returns each key's partition as acked."""
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        placed = {}
        for key in keys:
            meta = await producer.send_and_wait(topic, f"{tag}:".encode() + key, key=key)
            placed[key] = meta.partition
        return placed
    finally:
        await producer.stop()


@contextlib.asynccontextmanager
async def _tailing(
    bootstrap: str, topic: str, **options: Any
) -> AsyncIterator[tuple[TopicTail, list[Any]]]:
    records: list[Any] = []
    tail = TopicTail(bootstrap, topic, records.append, **options)
    stop = asyncio.Event()
    task = asyncio.create_task(tail.run(stop))
    try:
        yield tail, records
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def test_keys_land_where_the_keepers_ownership_puts_them(
    kafka_bootstrap: str, topic: str
) -> None:
    tokens = list(range(60))
    keys = [token_key(t) for t in tokens] + [market_key(f"0x{m:064x}") for m in range(10)]
    placed = await _publish(kafka_bootstrap, topic, keys, "k")
    assert len(set(placed.values())) == 3  # every partition of the 3 got some
    for key, partition in placed.items():
        assert partition_for(key, range(3)) == partition
    for token in tokens:
        partition = placed[token_key(token)]
        assert Ownership(3, {partition}).owns_token(token)
        assert not Ownership(3, set(range(3)) - {partition}).owns_token(token)


async def test_every_partition_is_read_from_its_end(kafka_bootstrap: str, topic: str) -> None:
    keys = [token_key(t) for t in range(12)]
    await _publish(kafka_bootstrap, topic, keys, "old")
    async with _tailing(kafka_bootstrap, topic) as (tail, records):
        await _wait(lambda: tail.connected, "the reader to be positioned")
        placed = await _publish(kafka_bootstrap, topic, keys, "new")
        await _wait(lambda: len(records) >= len(keys), "the new messages")
        await asyncio.sleep(0.5)  # nothing else arrives
    assert sorted(r.value for r in records) == sorted(b"new:" + k for k in keys)
    assert {r.partition for r in records} == set(placed.values()) == {0, 1, 2}
    assert tail.failures == 0 and tail.last_error is None


async def test_a_topic_created_later_is_read_once_it_exists(kafka_bootstrap: str) -> None:
    name = f"t-{uuid.uuid4().hex[:12]}"
    async with _tailing(kafka_bootstrap, name, topic_wait_s=30.0, topic_poll_s=0.1) as (
        tail,
        records,
    ):
        await asyncio.sleep(0.5)
        assert not tail.connected
        assert await ensure_topic(kafka_bootstrap, name, partitions=2)
        await _wait(lambda: tail.connected, "the topic to be found")
        await _publish(kafka_bootstrap, name, [token_key(1), token_key(2)], "v")
        await _wait(lambda: len(records) == 2, "the messages")
    assert tail.failures == 0
