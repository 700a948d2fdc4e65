"""The event contract in shared/events: the names, the message key and its partition, the
bounded dedup set and the all-partitions reader's pure parts."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from aiokafka import TopicPartition
from test_event_schema import TX, _fields

from services.indexer.decode import DecodedLog
from services.indexer.event_specs import load_event_table
from services.keeper.partitions import Ownership
from shared.events.dedup import RecentKeys, delivery_key
from shared.events.keys import event_key, market_key, partition_for, token_key
from shared.events.names import EVENT_NAMES, EventName
from shared.events.schema import EventEnvelope, decode_event, encode_event
from shared.events.tail import TopicTail, backoff_delay
from shared.kafka import make_producer

MID = "0x" + "cd" * 32


# ---------------------------------------------------------------- names


def test_every_abi_event_the_decoder_knows_is_in_the_enum_and_back() -> None:
    decoded = {spec.name for spec in load_event_table().values()}
    assert decoded == set(EventName)
    assert EVENT_NAMES == decoded
    assert all(type(n) is str for n in EVENT_NAMES)


def test_members_are_the_abi_names_and_act_as_plain_strings() -> None:
    for member in EventName:
        assert member.name == member.value == member == str(member) == f"{member}"
        assert hash(member) == hash(member.value)
    assert json.dumps({"name": EventName.MarketAdded}) == '{"name": "MarketAdded"}'
    assert "FundingRateUpdated" in frozenset({EventName.FundingRateUpdated})
    assert {EventName.VoteCast: 1}["VoteCast"] == 1


def _envelope(**over: Any) -> EventEnvelope:
    return EventEnvelope.model_validate(_fields(**{"market_id": MID, **over}))


def test_an_envelope_named_by_a_member_encodes_as_one_named_by_its_string() -> None:
    by_member = _envelope().model_copy(update={"name": EventName.PositionOpened})
    assert encode_event(by_member) == encode_event(_envelope())
    assert type(decode_event(encode_event(by_member)).name) is str


# ---------------------------------------------------------------- keys


def _decoded(token_id: int | None, market_id: str | None) -> DecodedLog:
    return DecodedLog(
        "PositionOpened", "0x" + "11" * 20, 9, "0x" + "ee" * 32, 1, TX, 3, {}, token_id, market_id
    )


@pytest.mark.parametrize(
    ("token_id", "market_id", "key"),
    [
        (7, MID, b"token:7"),
        (2**256 - 1, None, b"token:%d" % (2**256 - 1)),
        (None, MID, b"market:" + MID.encode()),
        (None, None, f"31337:{TX}:3".encode()),
    ],
)
def test_one_key_function_for_the_envelope_and_the_indexers_fast_path(
    token_id: int | None, market_id: str | None, key: bytes
) -> None:
    env = _envelope(token_id=token_id, market_id=market_id)
    assert event_key(token_id, market_id, env.event_id) == key
    assert env.key == key
    assert _decoded(token_id, market_id).key(31337) == key


class _Metadata:
    """The producer's view of one topic's partitions (what it gets from the broker)."""

    def __init__(self, partitions: int):
        self.ids = set(range(partitions))

    def partitions_for_topic(self, _topic: str) -> set[int]:
        return self.ids

    def available_partitions_for_topic(self, _topic: str) -> set[int]:
        return self.ids


async def test_the_keepers_ownership_places_keys_where_the_producer_sends_them() -> None:
    producer = make_producer("127.0.0.1:1")  # never started: only its partitioner runs
    keys = [token_key(t) for t in range(0, 600)] + [market_key(f"0x{m:064x}") for m in range(50)]
    for n in (1, 3, 6, 7, 12):
        producer._metadata = _Metadata(n)
        ownership = Ownership(n, range(n))
        for key in keys:
            sent_to = producer._partition("t", None, key, None, key, None)
            assert partition_for(key, range(n)) == sent_to
        for token in range(0, 600):
            key = token_key(token)
            sent_to = producer._partition("t", None, key, None, key, None)
            assert ownership.partition_of_token(token) == sent_to
            assert Ownership(n, {sent_to}).owns_token(token)
    with pytest.raises(ValueError):
        partition_for(b"token:1", range(0))


# ---------------------------------------------------------------- dedup


def test_recent_keys_is_bounded() -> None:
    recent = RecentKeys(size=2)
    assert not recent.seen(("a", False))
    assert recent.seen(("a", False))
    assert not recent.seen(("a", True))
    assert not recent.seen(("b", False))
    assert len(recent) == 2
    assert not recent.seen(("a", False))  # evicted by the size limit


def test_first_time_is_bounded_and_lets_a_fork_come_back() -> None:
    recent = RecentKeys(size=2)
    events = [_envelope(event_id=f"e{i}", block_hash=f"0x{i}") for i in range(3)]
    assert all(recent.first_time(e) for e in events)
    assert not recent.first_time(events[2])  # a redelivery
    assert recent.first_time(events[0])  # forgotten: only the last 2 are kept
    assert len(recent) == 2
    event = events[1]
    assert recent.first_time(event.as_reverted())  # the compensating copy is new
    assert recent.first_time(event)  # after its revert: the fork came back
    assert not recent.first_time(event)
    assert recent.first_time(event.model_copy(update={"block_hash": "0xbe"}))  # re-mined
    assert delivery_key(event) == (event.event_id, event.block_hash, False)


# ---------------------------------------------------------------- the all-partitions reader


def test_backoff_doubles_up_to_the_limit_with_jitter() -> None:
    for failures, base in ((1, 1.0), (2, 2.0), (4, 8.0), (9, 30.0), (50, 30.0)):
        for _ in range(20):
            assert base * 0.8 <= backoff_delay(failures, 30.0) <= base * 1.2


class _NoTopicConsumer:
    """A consumer whose cluster never has the topic."""

    def __init__(self) -> None:
        self.stopped = 0
        self.metadata_reads = 0

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        self.stopped += 1

    async def topics(self) -> set[str]:
        self.metadata_reads += 1
        return set()

    def partitions_for_topic(self, _topic: str) -> set[int] | None:
        return None


async def test_a_missing_topic_is_looked_for_then_counted_as_a_failure() -> None:
    consumer = _NoTopicConsumer()
    stop = asyncio.Event()
    tail = TopicTail(
        "127.0.0.1:1",
        "missing",
        lambda _r: None,
        consumer_factory=lambda: consumer,
        max_backoff=60.0,
        topic_wait_s=0.05,
        topic_poll_s=0.01,
    )
    task = asyncio.create_task(tail.run(stop))
    for _ in range(200):
        if tail.failures:
            break
        await asyncio.sleep(0.01)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert tail.failures == 1 and not tail.connected
    assert tail.last_error is not None and "does not exist" in tail.last_error
    assert consumer.metadata_reads > 1 and consumer.stopped == 1


class _GrowingConsumer(_NoTopicConsumer):
    """A consumer of a topic whose partitions grow; each partition's end is 10 * (id + 1)."""

    def __init__(self, partitions: set[int]):
        super().__init__()
        self.partitions = set(partitions)
        self.assigned: list[TopicPartition] = []
        self.offsets: dict[TopicPartition, int] = {}
        self.polls = 0

    def partitions_for_topic(self, _topic: str) -> set[int] | None:
        return set(self.partitions)

    def assign(self, tps: list[TopicPartition]) -> None:
        self.assigned = list(tps)
        self.offsets = {}

    def assignment(self) -> set[TopicPartition]:
        return set(self.assigned)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.offsets[tp] = offset

    async def seek_to_end(self, *tps: TopicPartition) -> None:
        for tp in tps:
            self.offsets[tp] = 10 * (tp.partition + 1)

    async def position(self, tp: TopicPartition) -> int:
        return self.offsets[tp]

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        self.polls += 1
        await asyncio.sleep(0.001)
        if self.polls == 2:  # a message on partition 0 moves its position on
            self.offsets[TopicPartition("t", 0)] += 1
            return {TopicPartition("t", 0): ["record"]}
        return {}


async def test_partitions_the_topic_gains_are_followed_from_their_end() -> None:
    consumer = _GrowingConsumer({0, 1})
    records: list[Any] = []
    stop = asyncio.Event()
    tail = TopicTail("127.0.0.1:1", "t", records.append, consumer_factory=lambda: consumer)
    task = asyncio.create_task(tail.run(stop))
    for _ in range(500):
        if records:
            break
        await asyncio.sleep(0.002)
    assert tail.connected
    consumer.partitions.add(2)
    for _ in range(500):
        if len(consumer.assigned) == 3:
            break
        await asyncio.sleep(0.002)
    stop.set()
    await asyncio.wait_for(task, 5)
    assert records == ["record"]
    # the partitions it had keep their positions; the new one starts at its end
    assert consumer.offsets == {
        TopicPartition("t", 0): 11,
        TopicPartition("t", 1): 20,
        TopicPartition("t", 2): 30,
    }
    assert tail.failures == 0
