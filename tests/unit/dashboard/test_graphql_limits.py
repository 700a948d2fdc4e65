"""The GraphQL cost estimate and the page-size rule (pure)."""

from __future__ import annotations

import pytest
from graphql import parse

from services.dashboard.graphql.limits import (
    COUNT_COST,
    operation_cost,
    page_size_error,
    root_fields,
)


def cost(query: str, variables: dict | None = None, name: str | None = None) -> int:  # type: ignore[type-arg]
    return operation_cost(parse(query), name, variables or {})


def test_rows_are_what_costs() -> None:
    assert cost("{ syncStatus { indexedBlock } }") == 1
    assert cost("{ positions { nodes { tokenId } } }") == 1 + 50  # default page
    assert cost("{ positions(first: 10) { nodes { tokenId wad { size } } } }") == 11
    assert cost("{ positions(first: 10) { edges { cursor node { tokenId } } } }") == 11
    both = "{ positions(first: 10) { edges { node { tokenId } } nodes { tokenId } totalCount } }"
    assert cost(both) == 1 + 10 + 10 + COUNT_COST
    assert cost("{ positions(first: 10) { pageInfo { hasNextPage } } }") == 1
    assert cost("{ fundingUpdates { nodes { time } } }") == 501
    assert cost("{ markets { pair wad { badDebt } } }") == 20
    assert cost("{ positions(first: 4) { nodes { events { name } } } }") == 1 + 4 * 21
    assert cost("{ position(tokenId: 1) { events { name } } }") == 1 + 20


def test_variables_fragments_aliases_and_operations() -> None:
    query = """
      query Page($n: Int!) { a: positions(first: $n) { ...P } b: positions { ...P } }
      query Other { markets { pair } }
      fragment P on PositionConnection { nodes { tokenId } }
    """
    assert cost(query, {"n": 7}, "Page") == (1 + 7) + (1 + 50)
    assert cost(query, {}, "Page") == 2 * (1 + 50)  # missing variable: the default
    assert cost(query, {"n": 7}, "Other") == 20
    assert cost(query, {"n": 7}, "Missing") == 0
    inline = "{ ... on Query { positions(first: 3) { nodes { tokenId } } } }"
    assert cost(inline) == 4
    assert cost("{ __schema { types { name fields { name } } } }") == 0


def test_pages_over_the_limit_count_as_the_limit() -> None:
    assert cost("{ positions(first: 100000) { nodes { tokenId } } }") == 501
    assert cost("{ positions(first: -5) { nodes { tokenId } } }") == 1


@pytest.mark.parametrize(
    ("field", "first", "ok"),
    [("positions", 1, True), ("positions", 500, True), ("positions", 501, False),
     ("positions", 0, False), ("fundingUpdates", 5000, True), ("liquidations", 501, False)],
)  # fmt: skip
def test_page_size(field: str, first: int, ok: bool) -> None:
    problem = page_size_error(field, first)
    assert (problem is None) == ok
    if problem:
        assert f"page-size limit of {field}" in problem and str(first) in problem


def test_root_fields() -> None:
    doc = parse(
        "query A { x: positions { totalCount } ...F } fragment F on Query { syncStatus { head } }"
    )
    assert root_fields(doc, "A") == {"positions", "syncStatus"}
    assert root_fields(parse("{ markets { pair } }"), None) == {"markets"}
