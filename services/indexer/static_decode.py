"""Decoders generated once per static event from its ABI (every argument a 32-byte word):
fixed slices of the hex data, no per-argument loop, the args JSON built in the same step."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from services.indexer.event_specs import EventSpec

_UINT_MAX = 1 << 256
_INT_MIN_NEG = 1 << 255


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


def word_decoder(abi_type: str) -> Callable[[str], Any] | None:
    if abi_type in _WORD_DECODERS:
        return _WORD_DECODERS[abi_type]
    if abi_type.startswith("uint") and abi_type[4:].isdigit():
        return _small_uint(int(abi_type[4:]))
    return None


_JSON_BOOL = ("false", "true")

# Word -> value expressions of the compiled decoders, by ABI type: `{w}` is a 64-hex-digit
# word (a slice of the data, or a topic without its 0x). uint256 is parsed inline.
_EXPR = {
    "uint256": "int({w}, 16)",
    "int256": "_int({w})",
    "bool": "_bool({w})",
    "address": "_address({w})",
    "bytes32": "'0x' + {w}.lower()",
}
# Value -> its text in the args JSON (integers as decimal strings), as an f-string fragment
# over the variable VAR.
_JSON_FRAGMENT = {
    "uint256": '"{VAR}"',
    "int256": '"{VAR}"',
    "bool": "{_JSON_BOOL[VAR]}",
    "address": '"{VAR}"',
    "bytes32": '"{VAR}"',
}

StaticDecoder = Callable[[Sequence[str], str], tuple[dict[str, Any], str]]


def compile_static_decoder(spec: EventSpec) -> StaticDecoder | None:
    """A function (topics, data) -> (args in ABI order, args JSON) for an event whose
    arguments are all 32-byte static words, generated once from the ABI (as namedtuple and
    dataclasses generate their methods): no per-argument loop, lookup or call on the hot path.
    The caller has checked the topic count and the data length. None: not compilable (a
    dynamic type, or a name that is not a plain identifier)."""
    if not spec.static or not all(t in _EXPR for _, t in spec.indexed):
        return None
    names = [n for n, _ in (*spec.indexed, *spec.data)]
    if len(set(names)) != len(names) or not all(n.isidentifier() for n in names):
        return None
    var: dict[str, str] = {}
    types: dict[str, str] = {}
    body = []
    if spec.indexed:
        checks = " or ".join(f"len(topics[{i + 1}]) != 66" for i in range(len(spec.indexed)))
        body.append(f"if {checks}: raise MalformedWord('a topic is not 32 bytes')")
    for i, (name, abi_type) in enumerate(spec.indexed):
        var[name], types[name] = f"t{i}", abi_type
        body.append(f"t{i} = " + _EXPR[abi_type].format(w=f"topics[{i + 1}][2:]"))
    for j, (name, abi_type) in enumerate(spec.data):
        var[name], types[name] = f"d{j}", abi_type
        word = f"data[{2 + 64 * j}:{66 + 64 * j}]"
        body.append(f"d{j} = " + _EXPR[abi_type].format(w=word))
    args = ", ".join(f"{name!r}: {var[name]}" for name in spec.order)
    text = ",".join(
        f'"{name}":' + _JSON_FRAGMENT[types[name]].replace("VAR", var[name]) for name in spec.order
    )
    body.append(f"return {{{args}}}, f'{{{{{text}}}}}'")
    source = "def decode(topics, data):\n" + "".join(f"    {line}\n" for line in body)
    namespace: dict[str, Any] = {
        "MalformedWord": MalformedWord,
        "_int": _int,
        "_bool": _bool,
        "_address": _address,
        "_JSON_BOOL": _JSON_BOOL,
    }
    exec(compile(source, f"<decoder {spec.signature}>", "exec"), namespace)
    fn: StaticDecoder = namespace["decode"]
    return fn
