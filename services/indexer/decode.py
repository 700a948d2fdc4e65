"""Raw JSON-RPC log -> decoded event, fast and without exceptions escaping.

A table maps topic0 to an `EventSpec` built once from the contracts' ABIs. Events whose data is
only static 32-byte words (all of Perp-EX's position events) are decoded by slicing the hex
string; the rest (MarketAdded carries a string) go through eth_abi. A log that is not one of
ours, or does not fit its ABI, becomes a `DecodeFailure` with a reason; the caller counts it.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

from services.indexer.event_specs import EventSpec
from services.indexer.static_decode import (
    MalformedWord,
    StaticDecoder,
    compile_static_decoder,
    word_decoder,
)
from shared.events.keys import event_key
from shared.events.schema import SCHEMA_VERSION, EventEnvelope

_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dump_compact(value: Any) -> str:
    """JSON the way pydantic writes it: no spaces, UTF-8 kept as is."""
    return _compact(value)


@functools.lru_cache(maxsize=1024)
def _json_str(value: str) -> str:
    """A JSON string literal (market pairs: a handful of values, encoded once each)."""
    return _compact(value)


def trace_json(carrier: Mapping[str, str] | None) -> str | None:
    """The envelope's `trace` field as compact JSON, keys sorted: the same bytes whether the
    carrier comes from the live span or back from the outbox row's jsonb (which reorders)."""
    if not carrier:
        return None
    return _compact(dict(sorted(carrier.items())))


@dataclass(slots=True)
class DecodedLog:
    name: str
    contract: str  # lower-case address of the emitter
    block_number: int
    block_hash: str
    block_timestamp: int
    tx_hash: str
    log_index: int
    args: dict[str, Any]  # ints as int, bools as bool, addresses/bytes32 as 0x lower-case hex
    token_id: int | None
    market_id: str | None
    # args as JSON (integers as decimal strings, ABI order); set by the decoder's compiled
    # static-event path, computed on first use otherwise
    args_json: str | None = None

    @property
    def position(self) -> tuple[int, int]:
        return self.block_number, self.log_index

    def event_id(self, chain_id: int) -> str:
        """As make_event_id (the hash is already lower-case here)."""
        return f"{chain_id}:{self.tx_hash}:{self.log_index}"

    def key(self, chain_id: int) -> bytes:
        """Kafka key (shared.events.keys.event_key, as EventEnvelope.key)."""
        return event_key(self.token_id, self.market_id, self.event_id(chain_id))

    def json_args(self) -> dict[str, Any]:
        """Args as the Kafka schema wants them: integers as decimal strings."""
        return {k: _json_value(v) for k, v in self.args.items()}

    def args_text(self) -> str:
        """`json_args()` as compact JSON, in ABI order."""
        if self.args_json is None:
            self.args_json = dump_compact(self.json_args())
        return self.args_json

    def encode(
        self,
        chain_id: int,
        market: str | None = None,
        trace_json: str | None = None,
        reverted: bool = False,
    ) -> bytes:
        """The Kafka value: byte-for-byte what `encode_event(self.envelope(...))` gives (a unit
        test holds it to that), built with one format operation instead of pydantic because it
        runs once per event on the backfill's hot path. `trace_json` is the carrier already
        dumped with `trace_json()`."""
        args_json = self.args_json if self.args_json is not None else self.args_text()
        tx = self.tx_hash
        li = self.log_index
        mid = "" if self.market_id is None else f',"market_id":"{self.market_id}"'
        pair = "" if market is None else ',"market":' + _json_str(market)
        token = "" if self.token_id is None else f',"token_id":{self.token_id}'
        trace = "" if trace_json is None else ',"trace":' + trace_json
        return (
            f'{{"v":{SCHEMA_VERSION},"event_id":"{chain_id}:{tx}:{li}","name":"{self.name}",'
            f'"chain_id":{chain_id},"contract":"{self.contract}",'
            f'"block_number":{self.block_number},"block_hash":"{self.block_hash}",'
            f'"block_timestamp":{self.block_timestamp},"tx_hash":"{tx}","log_index":{li}'
            f'{mid}{pair}{token},"args":{args_json},'
            f'"reverted":{"true" if reverted else "false"}{trace}}}'
        ).encode()

    def envelope(
        self,
        chain_id: int,
        market: str | None = None,
        trace: dict[str, str] | None = None,
        reverted: bool = False,
    ) -> EventEnvelope:
        # Every field is built here from checked values, so skip pydantic's re-validation:
        # this runs once per event on the backfill's hot path.
        return EventEnvelope.model_construct(
            v=SCHEMA_VERSION,
            event_id=self.event_id(chain_id),
            name=self.name,
            chain_id=chain_id,
            contract=self.contract,
            block_number=self.block_number,
            block_hash=self.block_hash,
            block_timestamp=self.block_timestamp,
            tx_hash=self.tx_hash,
            log_index=self.log_index,
            market_id=self.market_id,
            market=market,
            token_id=self.token_id,
            args=self.json_args(),
            reverted=reverted,
            trace=trace,
        )


@dataclass(frozen=True, slots=True)
class DecodeFailure:
    reason: str  # "unknown_contract" | "unknown_event" | "malformed"
    detail: str
    block_number: int | None = None
    tx_hash: str | None = None
    log_index: int | None = None


def _hex_int(value: Any) -> int:
    if isinstance(value, int):
        return value
    return int(value, 16)


@dataclass(frozen=True, slots=True)
class _Plan:
    spec: EventSpec
    topic_count: int  # topics including topic0
    data_length: int | None  # hex characters with 0x, for all-static data
    compiled: StaticDecoder | None
    topic_decoders: tuple[tuple[str, Callable[[str], Any] | None], ...]
    in_order: bool  # indexed-then-data order is the ABI order


class LogDecoder:
    """Decodes logs of the followed contracts. `contracts` maps lower-case address -> emitter."""

    def __init__(self, table: Mapping[str, EventSpec], contracts: Mapping[str, str]):
        self.table = dict(table)
        self.contracts = {a.lower(): kind for a, kind in contracts.items()}
        self._plans = {t0: self._plan(spec) for t0, spec in self.table.items()}

    @staticmethod
    def _plan(spec: EventSpec) -> _Plan:
        return _Plan(
            spec=spec,
            topic_count=1 + len(spec.indexed),
            data_length=2 + 64 * len(spec.data) if spec.static else None,
            compiled=compile_static_decoder(spec),
            topic_decoders=tuple((n, word_decoder(t)) for n, t in spec.indexed),
            in_order=tuple(n for n, _ in (*spec.indexed, *spec.data)) == spec.order,
        )

    @property
    def topics(self) -> list[str]:
        return sorted(self.table)

    def decode(
        self, raw: Mapping[str, Any], timestamps: Mapping[int, int] | None = None
    ) -> DecodedLog | DecodeFailure:
        try:
            return self._decode(raw, timestamps)
        except Exception as exc:  # a malformed log must never stop indexing
            return DecodeFailure(
                "malformed",
                f"{type(exc).__name__}: {exc}",
                _safe_int(raw.get("blockNumber")) if isinstance(raw, Mapping) else None,
                raw.get("transactionHash") if isinstance(raw, Mapping) else None,
                _safe_int(raw.get("logIndex")) if isinstance(raw, Mapping) else None,
            )

    def _decode(
        self, raw: Mapping[str, Any], timestamps: Mapping[int, int] | None
    ) -> DecodedLog | DecodeFailure:
        address = raw["address"]
        emitter = self.contracts.get(address)  # keys are lower-case: a hit needs no .lower()
        if emitter is None:
            address = address.lower()
            emitter = self.contracts.get(address)
        block_number = int(raw["blockNumber"], 16)
        tx_hash = raw["transactionHash"].lower()
        log_index = int(raw["logIndex"], 16)
        if emitter is None:
            return DecodeFailure(
                "unknown_contract", f"log from {address}", block_number, tx_hash, log_index
            )
        topics = raw["topics"]
        if not topics:
            return DecodeFailure("unknown_event", "anonymous log", block_number, tx_hash, log_index)
        plan = self._plans.get(topics[0])
        if plan is None:
            plan = self._plans.get(topics[0].lower())
        if plan is None or plan.spec.emitter != emitter:
            return DecodeFailure(
                "unknown_event",
                f"topic0 {topics[0].lower()} from {emitter}",
                block_number,
                tx_hash,
                log_index,
            )
        spec = plan.spec
        if len(topics) != plan.topic_count:
            return DecodeFailure(
                "malformed",
                f"{spec.name}: {len(topics) - 1} indexed topics, expected {plan.topic_count - 1}",
                block_number,
                tx_hash,
                log_index,
            )
        data: str = raw["data"]
        if plan.data_length is not None and len(data) != plan.data_length:
            return DecodeFailure(
                "malformed",
                f"{spec.name}: data is {(len(data) - 2) // 2} bytes, "
                f"expected {(plan.data_length - 2) // 2}",
                block_number,
                tx_hash,
                log_index,
            )
        args_json: str | None = None
        if plan.compiled is not None:
            args, args_json = plan.compiled(topics, data)
        else:
            args = self._decode_generic(plan, topics, data)
        ts_raw = raw.get("blockTimestamp")
        if ts_raw is not None:
            block_timestamp = int(ts_raw, 16)
        elif timestamps is not None and block_number in timestamps:
            block_timestamp = timestamps[block_number]
        else:
            return DecodeFailure(
                "malformed", "no block timestamp for the log", block_number, tx_hash, log_index
            )
        token_id = args.get("tokenId")
        market_id = args.get("marketId")
        return DecodedLog(  # positional: this runs once per log
            spec.name,
            address,
            block_number,
            raw["blockHash"].lower(),
            block_timestamp,
            tx_hash,
            log_index,
            args,
            token_id if type(token_id) is int else None,
            market_id if isinstance(market_id, str) else None,
            args_json,
        )

    @staticmethod
    def _decode_generic(plan: _Plan, topics: Sequence[str], data: str) -> dict[str, Any]:
        """Events the compiled path does not cover (dynamic data such as MarketAdded's
        string): topics word by word, data through eth_abi."""
        spec = plan.spec
        args: dict[str, Any] = {}
        for (name, dec), topic in zip(plan.topic_decoders, topics[1:], strict=True):
            if len(topic) != 66:
                raise MalformedWord(f"topic {name} is not 32 bytes")
            args[name] = dec(topic[2:]) if dec is not None else "0x" + topic[2:].lower()
        values = abi_decode([t for _, t in spec.data], bytes.fromhex(data[2:]))
        for (name, abi_type), value in zip(spec.data, values, strict=True):
            args[name] = _plain(name, abi_type, value)
        if len(args) != len(spec.order):
            raise MalformedWord("argument names repeat")
        return args if plan.in_order else {n: args[n] for n in spec.order}


def _plain(name: str, abi_type: str, value: Any) -> Any:
    """One eth_abi value as the envelope carries it: addresses lower-case, bytes 0x-hex, arrays
    (a proposal's targets, values, calldatas) as lists of the same."""
    if abi_type.endswith("]"):
        inner = abi_type[: abi_type.rindex("[")]
        return [_plain(name, inner, v) for v in value]
    if abi_type == "address":
        return value.lower()
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, str) and "\x00" in value:
        # PostgreSQL text (and jsonb) cannot hold NUL: the chunk would fail for good
        raise MalformedWord(f"{name}: string holds a NUL character")
    return value


def _json_value(value: Any) -> Any:
    """Integers as decimal strings, inside arrays too (bools stay bools)."""
    if type(value) is int:
        return str(value)
    if type(value) is list:
        return [_json_value(v) for v in value]
    return value


def _safe_int(value: Any) -> int | None:
    try:
        return _hex_int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def market_id_of(pair: str) -> str:
    """keccak256(bytes(pair)) as 0x-hex: how the contracts name a market."""
    return "0x" + keccak(text=pair).hex()
