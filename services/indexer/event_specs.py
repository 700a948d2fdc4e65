"""The events the indexer decodes: topic0 -> `EventSpec`, built once from the contracts' ABIs."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak

from shared.chain.abi import load_abi
from shared.events.names import EVENT_NAMES

# The contracts whose events the indexer follows (their ABIs name the events).
EMITTERS = ("PositionManager", "PositionNFT", "PerpExGovernor")
STATIC_TYPES = frozenset({"uint256", "int256", "bool", "address", "bytes32"})


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
        return all(t in STATIC_TYPES for _, t in self.data)

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
    """topic0 -> spec for every Perp-EX event (shared.events.names.EventName) in the ABIs.

    `abis` maps the emitting contract's name ("PositionManager", "PositionNFT") to its ABI."""
    table: dict[str, EventSpec] = {}
    for emitter, abi in abis.items():
        for entry in abi:
            if entry.get("type") == "event" and entry.get("name") in EVENT_NAMES:
                spec = event_spec(entry, emitter)
                table[spec.topic0] = spec
    return table


def load_event_table() -> dict[str, EventSpec]:
    """The table for the emitters' ABIs from the build output."""
    return build_event_table({name: load_abi(name) for name in EMITTERS})
