"""Custom scalars of the GraphQL API.

Values keep the REST API's representation (services.dashboard.formatting) so both answer the
same JSON: block numbers, timestamps and token ids are JSON numbers (GraphQL's Int is only 32
bits), on-chain WAD amounts are exact decimal strings, raw integers are decimal strings.
"""

from __future__ import annotations

import re
from typing import Any, NewType

import strawberry
from graphql import GraphQLError
from strawberry.types.scalar import ScalarDefinition

BigInt = NewType("BigInt", int)
Amount = NewType("Amount", str)
Wad = NewType("Wad", str)

MAX_UINT256 = 2**256 - 1
_INTEGER_RE = re.compile(r"^-?[0-9]{1,78}$")


def _parse_big_int(value: Any) -> int:
    if isinstance(value, bool):
        raise GraphQLError("BigInt must be an integer, not a boolean")
    if isinstance(value, int):
        number = value
    elif isinstance(value, str) and _INTEGER_RE.match(value.strip()):
        number = int(value.strip())
    else:
        raise GraphQLError(f"BigInt must be an integer (or its decimal string), got {value!r}")
    if not -MAX_UINT256 <= number <= MAX_UINT256:
        raise GraphQLError("BigInt is out of range (256 bits)")
    return number


def _serialize_big_int(value: Any) -> int:
    return int(value)


def _read_only(name: str) -> Any:
    def parse(_: Any) -> Any:
        raise GraphQLError(f"{name} is an output type only")

    return parse


SCALARS: dict[object, ScalarDefinition] = {
    BigInt: strawberry.scalar(
        name="BigInt",
        description=(
            "An integer that may not fit in 32 bits (block numbers, unix timestamps, token "
            "ids), as a JSON number; as input also its decimal string."
        ),
        serialize=_serialize_big_int,
        parse_value=_parse_big_int,
    ),
    Amount: strawberry.scalar(
        name="Amount",
        description=(
            'An on-chain 18-decimal fixed-point value (WAD) as an exact decimal string, e.g. "2.5"'
            ' or "-0.1"; never a float, so nothing is rounded.'
        ),
        serialize=str,
        parse_value=_read_only("Amount"),
    ),
    Wad: strawberry.scalar(
        name="Wad",
        description='The raw on-chain integer (WAD units) as a decimal string, e.g. "2500000000000000000".',
        serialize=str,
        parse_value=_read_only("Wad"),
    ),
}
