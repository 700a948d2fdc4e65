"""The fast execution of plain leaf fields answers exactly what graphql-core's own path does:
values, nulls, errors (located), aliases and key order."""

from __future__ import annotations

import enum
from typing import Any

import strawberry
from strawberry.schema.config import StrawberryConfig

from services.dashboard.graphql.fastpath import fast_executor
from services.dashboard.graphql.types import default_resolver


@strawberry.enum
class Color(enum.Enum):
    RED = "red"


@strawberry.type
class Item:
    name: str
    maybe: str | None
    must: str
    count: int
    color: Color

    @strawberry.field
    def shout(self) -> str:
        return default_resolver(self, "name").upper()  # type: ignore[no-any-return]


ROWS = [
    {"name": "a", "maybe": None, "must": "x", "count": 1, "color": "red"},
    {"name": "b", "maybe": "m", "must": None, "count": 2, "color": "red"},  # must: an error
    {"name": "c", "maybe": None, "must": "z", "count": 2**40, "color": "red"},  # Int overflow
]


@strawberry.type
class Query:
    @strawberry.field
    def items(self) -> list[Item | None]:
        return ROWS  # type: ignore[return-value]


def _schema(fast: bool) -> strawberry.Schema:
    return strawberry.Schema(
        Query,
        config=StrawberryConfig(default_resolver=default_resolver),
        execution_context_class=fast_executor(default_resolver) if fast else None,
    )


def _run(schema: strawberry.Schema, query: str) -> Any:
    result = schema.execute_sync(query)
    errors = sorted((e.message, tuple(e.path or ())) for e in result.errors or [])
    return result.data, errors


def test_same_answers_as_graphql_core() -> None:
    query = "{ items { __typename z: count name maybe must color shout n2: name } }"
    fast, slow = _run(_schema(True), query), _run(_schema(False), query)
    assert fast == slow
    data, errors = fast
    assert list(data["items"][0]) == [
        "__typename",
        "z",
        "name",
        "maybe",
        "must",
        "color",
        "shout",
        "n2",
    ]
    assert data["items"][0] == {
        "__typename": "Item", "z": 1, "name": "a", "maybe": None, "must": "x", "color": "RED",
        "shout": "A", "n2": "a",
    }  # fmt: skip
    assert data["items"][1] is None and data["items"][2] is None  # the errors null their item
    assert [path for _, path in errors] == [("items", 1, "must"), ("items", 2, "z")]
