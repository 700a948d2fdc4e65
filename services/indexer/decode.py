"""Raw JSON-RPC log -> decoded event, fast and without exceptions escaping.

A table maps topic0 to an `EventSpec` built once from the contracts' ABIs. Events whose data is
only static 32-byte words (all of Perp-EX's position events) are decoded by slicing the hex
string; the rest (MarketAdded carries a string) go through eth_abi. A log that is not one of
ours, or does not fit its ABI, becomes a `DecodeFailure` with a reason; the caller counts it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak

from shared.events.schema import EVENT_NAMES, EventEnvelope, make_event_id

_UINT_MAX = 1 << 256
_INT_MIN_NEG = 1 << 255
_STATIC_TYPES = frozenset({"uint256", "int256", "bool", "address", "bytes32"})


_compact = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def dump_compact(value: Any) -> str:
    """JSON the way pydantic writes it: no spaces, UTF-8 kept as is."""
    return _compact(value)


class MalformedWord(ValueError):
    pass


def _uint(word: str) -> int:
    return int(word, 16)


def _int(word: str) -> int:
    value = int(word, 16)
    return value - _UINT_MAX if value >= _INT_MIN_NEG else value


def _bool(word: str) -> bool:
    value = int(word, 16)
    if value > 1:
        raise MalformedWord(f"bool word is {value}")
    return value == 1


def _address(word: str) -> str:
    if word[:24].strip("0"):
        raise MalformedWord("address word has non-zero high bytes")
    return "0x" + word[24:].lower()


def _bytes32(word: str) -> str:
    return "0x" + word.lower()


def _small_uint(bits: int) -> Callable[[str], int]:
    limit = 1 << bits

    def parse(word: str) -> int:
        value = int(word, 16)
        if value >= limit:
            raise MalformedWord(f"uint{bits} word out of range")
        return value

    return parse


_WORD_DECODERS: dict[str, Callable[[str], Any]] = {
    "uint256": _uint,
    "int256": _int,
    "bool": _bool,
    "address": _address,
    "bytes32": _bytes32,
}


def _word_decoder(abi_type: str) -> Callable[[str], Any] | None:
    if abi_type in _WORD_DECODERS:
        return _WORD_DECODERS[abi_type]
    if abi_type.startswith("uint") and abi_type[4:].isdigit():
        return _small_uint(int(abi_type[4:]))
    return None


@dataclass(frozen=True)
class EventSpec:
    name: str
    topic0: str  # 0x + 64 lower-case hex
    emitter: str  # which contract emits it: "PositionManager" or "PositionNFT"
    indexed: tuple[tuple[str, str], ...]  # (name, abi type) in topic order
    data: tuple[tuple[str, str], ...]  # (name, abi type) in data order
    order: tuple[str, ...]  # all argument names in ABI order

    @property
    def static(self) -> bool:
        return all(t in _STATIC_TYPES for _, t in self.data)

    @property
    def signature(self) -> str:
        types = {n: t for n, t in (*self.indexed, *self.data)}
        return f"{self.name}({','.join(types[n] for n in self.order)})"


def event_spec(entry: Mapping[str, Any], emitter: str) -> EventSpec:
    inputs = entry["inputs"]
    types = ",".join(i["type"] for i in inputs)
    topic0 = "0x" + keccak(text=f"{entry['name']}({types})").hex()
    return EventSpec(
        name=entry["name"],
        topic0=topic0,
        emitter=emitter,
        indexed=tuple((i["name"], i["type"]) for i in inputs if i.get("indexed")),
        data=tuple((i["name"], i["type"]) for i in inputs if not i.get("indexed")),
        order=tuple(i["name"] for i in inputs),
    )


def build_event_table(abis: Mapping[str, Iterable[Mapping[str, Any]]]) -> dict[str, EventSpec]:
    """topic0 -> spec for every Perp-EX event (shared.events.schema.EVENT_NAMES) in the ABIs.

    `abis` maps the emitting contract's name ("PositionManager", "PositionNFT") to its ABI."""
    table: dict[str, EventSpec] = {}
    for emitter, abi in abis.items():
        for entry in abi:
            if entry.get("type") == "event" and entry.get("name") in EVENT_NAMES:
                spec = event_spec(entry, emitter)
                table[spec.topic0] = spec
    return table


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
    plain: bool = False  # all args from static ABI types (fast JSON path is exact)

    @property
    def position(self) -> tuple[int, int]:
        return self.block_number, self.log_index

    def event_id(self, chain_id: int) -> str:
        return make_event_id(chain_id, self.tx_hash, self.log_index)

    def key(self, chain_id: int) -> bytes:
        """Kafka key, as EventEnvelope.key: the token, else the market, else the event."""
        if self.token_id is not None:
            return b"token:%d" % self.token_id
        if self.market_id is not None:
            return b"market:" + self.market_id.encode()
        return self.event_id(chain_id).encode()

    def json_args(self) -> dict[str, Any]:
        """Args as the Kafka schema wants them: integers as decimal strings."""
        return {k: (str(v) if type(v) is int else v) for k, v in self.args.items()}

    def encode(
        self,
        chain_id: int,
        market: str | None = None,
        trace_json: str | None = None,
        reverted: bool = False,
    ) -> tuple[bytes, str]:
        """(Kafka value, args JSON). The value is byte-for-byte what
        `encode_event(self.envelope(...))` gives (a unit test holds it to that), built without
        pydantic because it runs once per event on the backfill's hot path. `trace_json` is the
        carrier already dumped with `dump_compact`."""
        if self.plain:
            # Static ABI types only: every string is 0x-hex and every name an identifier, so
            # nothing needs escaping.
            parts = []
            for k, v in self.args.items():
                t = type(v)
                if t is int:
                    parts.append(f'"{k}":"{v}"')
                elif t is bool:
                    parts.append(f'"{k}":true' if v else f'"{k}":false')
                else:
                    parts.append(f'"{k}":"{v}"')
            args_json = "{" + ",".join(parts) + "}"
        else:
            args_json = dump_compact(self.json_args())
        out = [
            '{"v":1,"event_id":"',
            str(chain_id),
            ":",
            self.tx_hash,
            ":",
            str(self.log_index),
            '","name":"',
            self.name,
            '","chain_id":',
            str(chain_id),
            ',"contract":"',
            self.contract,
            '","block_number":',
            str(self.block_number),
            ',"block_hash":"',
            self.block_hash,
            '","block_timestamp":',
            str(self.block_timestamp),
            ',"tx_hash":"',
            self.tx_hash,
            '","log_index":',
            str(self.log_index),
        ]
        if self.market_id is not None:
            out += [',"market_id":"', self.market_id, '"']
        if market is not None:
            out += [',"market":', dump_compact(market)]
        if self.token_id is not None:
            out += [',"token_id":', str(self.token_id)]
        out += [',"args":', args_json, ',"reverted":', "true" if reverted else "false"]
        if trace_json is not None:
            out += [',"trace":', trace_json]
        out.append("}")
        return "".join(out).encode(), args_json

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
            v=1,
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


class LogDecoder:
    """Decodes logs of the followed contracts. `contracts` maps lower-case address -> emitter."""

    def __init__(self, table: Mapping[str, EventSpec], contracts: Mapping[str, str]):
        self.table = dict(table)
        self.contracts = {a.lower(): kind for a, kind in contracts.items()}
        self._plans = {t0: self._plan(spec) for t0, spec in self.table.items()}

    @staticmethod
    def _plan(spec: EventSpec) -> tuple[Any, ...]:
        topic_decoders = tuple((n, _word_decoder(t)) for n, t in spec.indexed)
        if spec.static:
            data_decoders: Any = tuple((n, _WORD_DECODERS[t]) for n, t in spec.data)
        else:
            data_decoders = None
        in_order = tuple(n for n, _ in (*spec.indexed, *spec.data)) == spec.order
        return topic_decoders, data_decoders, in_order

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
        topic0 = topics[0].lower()
        spec = self.table.get(topic0)
        if spec is None or spec.emitter != emitter:
            return DecodeFailure(
                "unknown_event", f"topic0 {topic0} from {emitter}", block_number, tx_hash, log_index
            )
        topic_decoders, data_decoders, in_order = self._plans[topic0]
        if len(topics) != 1 + len(topic_decoders):
            return DecodeFailure(
                "malformed",
                f"{spec.name}: {len(topics) - 1} indexed topics, expected {len(topic_decoders)}",
                block_number,
                tx_hash,
                log_index,
            )
        args: dict[str, Any] = {}
        # (the topic count was checked above; uint256, the common case, is parsed inline)
        for (name, dec), topic in zip(topic_decoders, topics[1:], strict=False):
            if len(topic) != 66:
                raise MalformedWord(f"topic {name} is not 32 bytes")
            args[name] = int(topic[2:], 16) if dec is _uint else dec(topic[2:])
        data: str = raw["data"]
        if data_decoders is not None:
            expected = 2 + 64 * len(data_decoders)
            if len(data) != expected:
                return DecodeFailure(
                    "malformed",
                    f"{spec.name}: data is {(len(data) - 2) // 2} bytes, expected {(expected - 2) // 2}",
                    block_number,
                    tx_hash,
                    log_index,
                )
            pos = 2
            for name, dec in data_decoders:
                word = data[pos : pos + 64]
                args[name] = int(word, 16) if dec is _uint else dec(word)
                pos += 64
            if len(args) != len(spec.order):
                raise MalformedWord("argument names repeat")
        else:
            values = abi_decode([t for _, t in spec.data], bytes.fromhex(data[2:]))
            for (name, abi_type), value in zip(spec.data, values, strict=True):
                if abi_type == "address":
                    value = value.lower()
                elif isinstance(value, bytes):
                    value = "0x" + value.hex()
                args[name] = value
            if len(args) != len(spec.order):
                raise MalformedWord("argument names repeat")
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
            args if in_order else {n: args[n] for n in spec.order},
            token_id if type(token_id) is int else None,
            market_id if isinstance(market_id, str) else None,
            data_decoders is not None,
        )


def _safe_int(value: Any) -> int | None:
    try:
        return _hex_int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def market_id_of(pair: str) -> str:
    """keccak256(bytes(pair)) as 0x-hex: how the contracts name a market."""
    return "0x" + keccak(text=pair).hex()
