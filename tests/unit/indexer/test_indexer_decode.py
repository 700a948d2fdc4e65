from __future__ import annotations

import json
from typing import Any

import pytest
from eth_abi import encode
from hypothesis import given, settings
from hypothesis import strategies as st

from services.indexer import decode as decode_module
from services.indexer.decode import (
    DecodedLog,
    DecodeFailure,
    LogDecoder,
    dump_compact,
    market_id_of,
    trace_json,
)
from services.indexer.event_specs import load_event_table
from services.indexer.static_decode import compile_static_decoder
from shared.events.schema import SCHEMA_VERSION, decode_event, encode_event

PM = "0x" + "11" * 20
NFT = "0x" + "22" * 20
GOV = "0x" + "33" * 20
ADDRESS_OF = {"PositionManager": PM, "PositionNFT": NFT, "PerpExGovernor": GOV}
OWNER = "0x" + "ab" * 20
MID = market_id_of("ETH/USDT")
TABLE = load_event_table()
BY_NAME = {s.name: s for s in TABLE.values()}


def word(value: int) -> str:
    return "0x" + (value % (1 << 256)).to_bytes(32, "big").hex()


def addr_topic(a: str) -> str:
    return "0x" + "00" * 12 + a[2:]


def raw_log(
    name: str, topics: list[str], types: list[str], values: list[Any], **over: Any
) -> dict[str, Any]:
    spec = BY_NAME[name]
    log = {
        "address": ADDRESS_OF[spec.emitter],
        "topics": [spec.topic0, *topics],
        "data": "0x" + encode(types, values).hex(),
        "blockHash": "0x" + "cd" * 32,
        "blockNumber": "0x10",
        "blockTimestamp": "0x6553f100",
        "transactionHash": "0x" + "ef" * 32,
        "transactionIndex": "0x0",
        "logIndex": "0x3",
        "removed": False,
    }
    log.update(over)
    return log


def opened(token: int = 7, **over: Any) -> dict[str, Any]:
    return raw_log(
        "PositionOpened",
        [word(token), addr_topic(OWNER), MID],
        ["bool", "uint256", "uint256", "uint256", "uint256", "uint256", "uint256", "int256"],
        [True, 10**21, 5 * 10**18, 2 * 10**18, 5 * 10**21, 2500 * 10**18, 3 * 10**18, -42],
        **over,
    )


@pytest.fixture
def decoder() -> LogDecoder:
    return LogDecoder(TABLE, {a: name for name, a in ADDRESS_OF.items()})


def test_table_holds_every_perpex_event() -> None:
    assert set(BY_NAME) == {
        "PositionOpened",
        "PositionClosed",
        "PositionLiquidated",
        "PositionReduced",
        "PositionDecreased",
        "MarginChanged",
        "FundingRateUpdated",
        "MarketAdded",
        "MarketPaused",
        "PositionMinted",
        "PositionBurned",
        # governance: the PositionManager's parameter events and the Governor's lifecycle
        "RiskParamsUpdated",
        "SafetyParamsUpdated",
        "FundingParamsUpdated",
        "ParamChangeScheduled",
        "FundingRewardSet",
        "GuardianSet",
        "ParamChangeDelaySet",
        "ProposalCreated",
        "VoteCast",
        "ProposalQueued",
        "ProposalExecuted",
        "ProposalCanceled",
    }
    assert BY_NAME["ProposalCreated"].emitter == "PerpExGovernor"
    assert BY_NAME["RiskParamsUpdated"].emitter == "PositionManager"
    assert BY_NAME["PositionOpened"].signature.startswith(
        "PositionOpened(uint256,address,bytes32,bool"
    )


def test_position_opened(decoder: LogDecoder) -> None:
    d = decoder.decode(opened())
    assert isinstance(d, DecodedLog)
    assert d.name == "PositionOpened" and d.token_id == 7 and d.market_id == MID
    assert d.args["owner"] == OWNER and d.args["isLong"] is True
    assert d.args["collateral"] == 10**21 and d.args["entryPrice"] == 2500 * 10**18
    assert d.args["entryFundingIndex"] == -42
    assert d.block_number == 16 and d.log_index == 3 and d.block_timestamp == 0x6553F100
    assert list(d.args) == list(BY_NAME["PositionOpened"].order)


def test_negative_int256(decoder: LogDecoder) -> None:
    raw = raw_log(
        "PositionClosed",
        [word(7), addr_topic(OWNER), MID],
        ["uint256", "int256", "int256", "uint256", "uint256"],
        [2400 * 10**18, -(10**20), -5, 0, 7],
    )
    d = decoder.decode(raw)
    assert isinstance(d, DecodedLog)
    assert d.args["realizedPnl"] == -(10**20) and d.args["fundingPayment"] == -5


def test_dynamic_event_through_eth_abi(decoder: LogDecoder) -> None:
    vamm, feed = "0x" + "33" * 20, "0x" + "44" * 20
    raw = raw_log("MarketAdded", [MID], ["string", "address", "address"], ["ETH/USDT", vamm, feed])
    d = decoder.decode(raw)
    assert isinstance(d, DecodedLog)
    assert d.args == {"marketId": MID, "pair": "ETH/USDT", "vamm": vamm, "oracleFeed": feed}
    assert d.token_id is None and d.market_id == MID
    # a NUL in a string cannot be stored (text, jsonb): a malformed log, not a stuck chunk
    bad = raw_log("MarketAdded", [MID], ["string", "address", "address"], ["ETH\x00", vamm, feed])
    failure = decoder.decode(bad)
    assert isinstance(failure, DecodeFailure) and failure.reason == "malformed"
    assert "NUL" in failure.detail


def test_envelope_roundtrips_through_schema(decoder: LogDecoder) -> None:
    d = decoder.decode(opened())
    assert isinstance(d, DecodedLog)
    env = d.envelope(31337, "ETH/USDT", {"traceparent": "00-" + "1" * 32 + "-" + "2" * 16 + "-01"})
    back = decode_event(encode_event(env))
    assert back == env
    assert back.args["collateral"] == str(10**21) and back.args["isLong"] is True
    assert back.key == b"token:7"
    assert back.event_id == f"31337:{'0x' + 'ef' * 32}:3"
    rev = decode_event(encode_event(d.envelope(31337, "ETH/USDT", reverted=True)))
    assert rev.reverted and rev.event_id == back.event_id


def test_funding_event_keyed_by_market(decoder: LogDecoder) -> None:
    raw = raw_log(
        "FundingRateUpdated",
        [MID],
        ["int256", "int256", "int256", "uint256", "uint256", "uint256", "int256"],
        [-3, 10**15, -(10**15), 2500 * 10**18, 2499 * 10**18, 1_700_000_000, -9],
    )
    d = decoder.decode(raw)
    assert isinstance(d, DecodedLog)
    assert d.envelope(1).key == f"market:{MID}".encode()


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda r: r.update(address="0x" + "99" * 20), "unknown_contract"),
        (lambda r: r.update(topics=["0x" + "00" * 32, *r["topics"][1:]]), "unknown_event"),
        (lambda r: r.update(topics=[]), "unknown_event"),
        (lambda r: r.update(topics=r["topics"][:2]), "malformed"),
        (lambda r: r.update(data=r["data"][:-64]), "malformed"),
        (lambda r: r.update(data=r["data"] + "00"), "malformed"),
        (lambda r: r.update(data="0xzz" + r["data"][4:]), "malformed"),
        (lambda r: r.update(topics=[*r["topics"][:1], "0x12", *r["topics"][2:]]), "malformed"),
        (lambda r: r.pop("blockNumber"), "malformed"),
        (lambda r: r.update(blockNumber=None), "malformed"),
        (lambda r: r.pop("blockTimestamp"), "malformed"),
    ],
)
def test_bad_logs_become_counted_failures(decoder: LogDecoder, mutate: Any, reason: str) -> None:
    raw = opened()
    mutate(raw)
    result = decoder.decode(raw)
    assert isinstance(result, DecodeFailure)
    assert result.reason == reason


def test_bool_and_address_words_are_checked(decoder: LogDecoder) -> None:
    raw = opened()
    raw["data"] = "0x" + "00" * 31 + "02" + raw["data"][66:]
    assert isinstance(decoder.decode(raw), DecodeFailure)
    raw = opened()
    raw["topics"][2] = "0x" + "ff" * 32
    assert isinstance(decoder.decode(raw), DecodeFailure)


def test_wrong_emitter_is_unknown(decoder: LogDecoder) -> None:
    raw = opened(address=NFT)
    failure = decoder.decode(raw)
    assert isinstance(failure, DecodeFailure) and failure.reason == "unknown_event"


def test_timestamp_from_headers_when_log_lacks_it(decoder: LogDecoder) -> None:
    raw = opened()
    raw.pop("blockTimestamp")
    d = decoder.decode(raw, {16: 123})
    assert isinstance(d, DecodedLog) and d.block_timestamp == 123


def test_non_dict_input_never_raises(decoder: LogDecoder) -> None:
    assert isinstance(decoder.decode({}), DecodeFailure)
    assert isinstance(decoder.decode("junk"), DecodeFailure)  # type: ignore[arg-type]


@pytest.mark.parametrize("reverted", [False, True])
@pytest.mark.parametrize("market", [None, "ETH/USDT", 'Q"U\\OTE/€\n'])
@pytest.mark.parametrize(
    "trace", [None, {"traceparent": "00-" + "a" * 32 + "-" + "b" * 16 + "-01"}]
)
def test_fast_encoding_is_byte_identical_to_encode_event(
    decoder: LogDecoder, reverted: bool, market: str | None, trace: dict[str, str] | None
) -> None:
    vamm, feed = "0x" + "33" * 20, "0x" + "44" * 20
    logs = [
        opened(),
        raw_log("MarketAdded", [MID], ["string", "address", "address"], ['E"T€H', vamm, feed]),
        raw_log(
            "FundingRateUpdated",
            [MID],
            ["int256", "int256", "int256", "uint256", "uint256", "uint256", "int256"],
            [-(2**255), 2**255 - 1, -(2**255), 0, 1, 2**256 - 1, -(2**255)],
        ),
    ]
    for raw in logs:
        d = decoder.decode(raw)
        assert isinstance(d, DecodedLog)
        value = d.encode(31337, market, trace_json(trace), reverted)
        env = d.envelope(31337, market, trace, reverted=reverted)
        assert value == encode_event(env)
        assert json.loads(d.args_text()) == env.args
        assert list(json.loads(d.args_text())) == list(env.args)
        assert d.key(31337) == env.key
        assert decode_event(value) == env


_STRATEGIES = {
    "uint256": st.integers(0, 2**256 - 1),
    "int256": st.integers(-(2**255), 2**255 - 1),
    "bool": st.booleans(),
    "address": st.binary(min_size=20, max_size=20).map(lambda b: "0x" + b.hex()),
    "bytes32": st.binary(min_size=32, max_size=32),
}
SHARED_DECODER = LogDecoder(TABLE, {a: name for name, a in ADDRESS_OF.items()})
STATIC_SPECS = sorted((s for s in TABLE.values() if s.static), key=lambda s: s.name)


def test_every_static_event_has_a_compiled_decoder() -> None:
    assert {s.name for s in STATIC_SPECS} == set(BY_NAME) - {
        "MarketAdded",
        "ProposalCreated",
        "VoteCast",
    }
    assert all(compile_static_decoder(s) is not None for s in STATIC_SPECS)
    assert compile_static_decoder(BY_NAME["MarketAdded"]) is None


@pytest.mark.parametrize("spec", STATIC_SPECS, ids=lambda s: s.name)
@settings(max_examples=40, deadline=None)
@given(data=st.data())
def test_compiled_decoder_agrees_with_eth_abi(spec: Any, data: st.DataObject) -> None:
    decoder = SHARED_DECODER
    values = {n: data.draw(_STRATEGIES[t], label=n) for n, t in (*spec.indexed, *spec.data)}
    topics = [spec.topic0] + ["0x" + encode([t], [values[n]]).hex() for n, t in spec.indexed]
    raw = raw_log(
        spec.name, topics[1:], [t for _, t in spec.data], [values[n] for n, _ in spec.data]
    )
    fast = decoder.decode(raw)
    assert isinstance(fast, DecodedLog) and fast.args_json is not None
    generic = LogDecoder._decode_generic(decoder._plans[spec.topic0], topics, raw["data"])
    assert fast.args == generic and list(fast.args) == list(spec.order)
    assert fast.args_json == dump_compact(fast.json_args())
    # the fast encoder, for every event and any arguments: byte for byte the schema's encoding
    env = fast.envelope(31337, "ETH/USDT")
    assert fast.encode(31337, "ETH/USDT") == encode_event(env)
    assert fast.key(31337) == env.key


def test_proposal_created_arrays_decode_to_the_envelope_encodings(decoder: LogDecoder) -> None:
    """A proposal's arrays (targets, values, calldatas, signatures) keep the envelope's
    encodings inside: addresses lower-case, integers as decimal strings, bytes as 0x-hex."""
    target = "0x" + "Ab" * 20
    values = [
        2**256 - 1,
        OWNER,
        [target, PM],
        [0, 10**30],
        ["", "f()"],
        [b"\x12\x34", b""],
        1_700_000_001,
        1_700_000_061,
        "set ETH/USDT maxLeverage 15",
    ]
    types = [
        "uint256", "address", "address[]", "uint256[]", "string[]", "bytes[]",
        "uint256", "uint256", "string",
    ]  # fmt: skip
    d = decoder.decode(raw_log("ProposalCreated", [], types, values, address=GOV))
    assert isinstance(d, DecodedLog), d
    assert d.token_id is None and d.market_id is None
    assert d.args["targets"] == [target.lower(), PM]
    assert d.args["calldatas"] == ["0x1234", "0x"]
    env = decode_event(d.encode(31337))
    assert env.args["proposalId"] == str(2**256 - 1)
    assert env.args["values"] == ["0", str(10**30)]
    assert env.args["signatures"] == ["", "f()"]
    assert env.args["description"] == "set ETH/USDT maxLeverage 15"
    assert d.encode(31337) == encode_event(d.envelope(31337))


def test_vote_cast_encodes_byte_identical_to_the_schema(decoder: LogDecoder) -> None:
    types = ["uint256", "uint8", "uint256", "string"]
    raw = raw_log("VoteCast", [addr_topic(OWNER)], types, [2**200, 2, 10**24, 'no\n"€"'])
    d = decoder.decode(raw)
    assert isinstance(d, DecodedLog), d
    assert d.encode(31337, None, None, True) == encode_event(d.envelope(31337, reverted=True))


def test_the_fast_encoders_version_is_the_schemas(
    decoder: LogDecoder, monkeypatch: pytest.MonkeyPatch
) -> None:
    d = decoder.decode(opened())
    assert isinstance(d, DecodedLog)
    assert json.loads(d.encode(31337))["v"] == SCHEMA_VERSION
    monkeypatch.setattr(decode_module, "SCHEMA_VERSION", SCHEMA_VERSION + 1)
    assert json.loads(d.encode(31337))["v"] == SCHEMA_VERSION + 1 == d.envelope(31337).v


def test_a_governor_event_from_another_contract_is_not_ours(decoder: LogDecoder) -> None:
    raw = raw_log("ProposalExecuted", [], ["uint256"], [5], address=PM)
    failure = decoder.decode(raw)
    assert isinstance(failure, DecodeFailure) and failure.reason == "unknown_event"
