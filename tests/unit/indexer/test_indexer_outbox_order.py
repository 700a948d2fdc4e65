"""The drainer hands a partition's next record batch to the producer only after the previous
one is acknowledged, so a failed batch is never overtaken on its partition (a consumer would
otherwise see a position's later event before its earlier one)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import pytest
from aiokafka.partitioner import DefaultPartitioner

from services.indexer.outbox import OutboxDrainer
from services.indexer.outbox_rows import OutboxRow
from services.indexer.outbox_store import OutboxStore

PARTITIONS = [0, 1]


class FakeBatch:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self.keys: list[bytes] = []

    def append(self, *, key: bytes, value: bytes, timestamp: None, headers: Any) -> object | None:
        if len(self.keys) == self.capacity:
            return None
        self.keys.append(key)
        return object()


class FakeCluster:
    def partitions_for_topic(self, topic: str) -> set[int]:
        return set(PARTITIONS)


class FakeClient:
    cluster = FakeCluster()

    async def force_metadata_update(self) -> bool:
        return True


class Ack:
    def __init__(self, partition: int):
        self.partition = partition


class FakeProducer:
    """Acknowledges each batch on the next loop turn; the first batch of `failing` fails."""

    def __init__(self, failing: int | None):
        self.client = FakeClient()
        self.failing = failing
        self.submitted: list[tuple[int, list[bytes]]] = []

    def create_batch(self) -> FakeBatch:
        return FakeBatch(capacity=2)

    async def send_batch(self, batch: FakeBatch, topic: str, *, partition: int) -> Any:
        first = all(p != partition for p, _ in self.submitted)
        self.submitted.append((partition, batch.keys))
        future: asyncio.Future[Ack] = asyncio.get_running_loop().create_future()
        if first and partition == self.failing:
            asyncio.get_running_loop().call_soon(future.set_exception, OSError("batch lost"))
        else:
            asyncio.get_running_loop().call_soon(future.set_result, Ack(partition))
        return future


def _rows() -> tuple[list[OutboxRow], dict[int, list[bytes]]]:
    """Six keys, three messages each, in one row; and each partition's keys in send order."""
    partitioner = DefaultPartitioner()
    messages = []
    expected: dict[int, list[bytes]] = {p: [] for p in PARTITIONS}
    for n in range(3):
        for token in range(6):
            key = b"token:%d" % token
            messages.append((f"1:0x{token:02x}:{n}", key, b"{}"))
            expected[partitioner(key, PARTITIONS, PARTITIONS)].append(key)
    assert all(len(keys) > 2 for keys in expected.values())  # several batches per partition
    return [OutboxRow(1, messages, [])], expected


def _drainer() -> OutboxDrainer:
    return OutboxDrainer(cast(OutboxStore, None), "127.0.0.1:1", "t")


async def test_every_message_in_order_per_partition() -> None:
    rows, expected = _rows()
    producer = FakeProducer(failing=None)
    await _drainer()._send_all(cast(Any, producer), rows)
    for part in PARTITIONS:
        sent = [k for p, keys in producer.submitted if p == part for k in keys]
        assert sent == expected[part]


async def test_a_failed_batch_is_not_overtaken_on_its_partition() -> None:
    rows, _ = _rows()
    producer = FakeProducer(failing=0)
    with pytest.raises(OSError, match="batch lost"):
        await _drainer()._send_all(cast(Any, producer), rows)
    assert [p for p, _ in producer.submitted].count(0) == 1  # nothing after the failed one
