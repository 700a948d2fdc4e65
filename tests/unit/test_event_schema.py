"""The Kafka envelope's decoding: what a consumer must refuse, with a reason, never crash on."""

from __future__ import annotations

import json
from typing import Any

import pytest

from shared.events.schema import (
    SCHEMA_VERSION,
    EventEnvelope,
    MalformedEventError,
    decode_event,
    encode_event,
    make_event_id,
)
from shared.telemetry import context_from_headers

TX = "0x" + "ab" * 32


def _fields(**over: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "v": SCHEMA_VERSION,
        "event_id": make_event_id(31337, TX, 3),
        "name": "PositionOpened",
        "chain_id": 31337,
        "contract": "0x" + "11" * 20,
        "block_number": 7,
        "block_hash": "0x" + "cd" * 32,
        "block_timestamp": 1_700_000_000,
        "tx_hash": TX,
        "log_index": 3,
        "token_id": 5,
        "args": {"tokenId": "5"},
    }
    data.update(over)
    return data


def test_a_valid_envelope_round_trips() -> None:
    event = decode_event(json.dumps(_fields()))
    assert decode_event(encode_event(event)) == event


@pytest.mark.parametrize(
    ("over", "problem"),
    [
        ({"block_number": "7"}, "block_number"),
        ({"log_index": 3.0}, "log_index"),
        ({"chain_id": True}, "chain_id"),
        ({"reverted": "yes"}, "reverted"),
        ({"token_id": -1}, "token_id"),
        ({"block_timestamp": 10**13}, "block_timestamp"),
        ({"v": True}, "version"),
        ({"surprise": 1}, "surprise"),
    ],
)
def test_wrong_types_and_ranges_are_refused_by_name(over: dict[str, Any], problem: str) -> None:
    with pytest.raises(MalformedEventError, match=problem):
        decode_event(json.dumps(_fields(**over)))


def test_json_nested_too_deeply_is_malformed_not_a_crash() -> None:
    # deeper than the interpreter's recursion limit (1000 by default; a test runner may raise
    # it, which is why this stays at a depth the C stack takes either way)
    nested = '{"a":' * 5_000 + "1" + "}" * 5_000
    with pytest.raises(MalformedEventError):
        decode_event(nested)


def test_headers_without_values_carry_no_trace_context() -> None:
    context_from_headers([("traceparent", None), ("", b"x")])  # type: ignore[list-item]
    assert isinstance(EventEnvelope.model_fields, dict)
