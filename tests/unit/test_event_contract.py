"""The event contract in shared/events: the names, and the message key and its partition."""

from __future__ import annotations

import json
from typing import Any

import pytest

from services.indexer.app import load_event_table
from services.indexer.decode import DecodedLog
from services.keeper.partitions import Ownership
from shared.events.keys import event_key, market_key, partition_for, token_key
from shared.events.names import EVENT_NAMES, EventName
from shared.events.schema import EventEnvelope, decode_event, encode_event, make_event_id
from shared.kafka import make_producer

TX = "0x" + "ab" * 32
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
    data: dict[str, Any] = {
        "event_id": make_event_id(31337, TX, 4),
        "name": "PositionOpened",
        "chain_id": 31337,
        "contract": "0x" + "11" * 20,
        "block_number": 9,
        "block_hash": "0x" + "ee" * 32,
        "block_timestamp": 1_700_000_000,
        "tx_hash": TX,
        "log_index": 4,
        "token_id": 7,
        "market_id": MID,
        "args": {"tokenId": "7"},
    }
    data.update(over)
    return EventEnvelope.model_validate(data)


def test_an_envelope_named_by_a_member_encodes_as_one_named_by_its_string() -> None:
    by_member = _envelope().model_copy(update={"name": EventName.PositionOpened})
    assert encode_event(by_member) == encode_event(_envelope())
    assert type(decode_event(encode_event(by_member)).name) is str


# ---------------------------------------------------------------- keys


def _decoded(token_id: int | None, market_id: str | None) -> DecodedLog:
    return DecodedLog(
        "PositionOpened", "0x" + "11" * 20, 9, "0x" + "ee" * 32, 1, TX, 4, {}, token_id, market_id
    )


@pytest.mark.parametrize(
    ("token_id", "market_id", "key"),
    [
        (7, MID, b"token:7"),
        (2**256 - 1, None, b"token:%d" % (2**256 - 1)),
        (None, MID, b"market:" + MID.encode()),
        (None, None, f"31337:{TX}:4".encode()),
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
