"""/graphql against a real PostgreSQL holding the indexer's schema and rows: answers equal the
REST API's for the same data, cursor pages, filters and orders, and the limits."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from dashboard_support import ALICE, BOB, BTC, ETH, KEEPER, T0, StartDashboard
from graphql_support import (
    FUNDING_FIELDS,
    LIQUIDATION_FIELDS,
    MARKET_FIELDS,
    POSITION_FIELDS,
    data,
    error,
    gql,
    snake,
)

pytestmark = pytest.mark.integration

POSITIONS = f"""
query($filter: PositionFilter, $orderBy: PositionOrderBy!, $direction: Direction!,
      $first: Int!, $after: String) {{
  positions(filter: $filter, orderBy: $orderBy, direction: $direction, first: $first,
            after: $after) {{
    totalCount
    pageInfo {{ hasNextPage endCursor }}
    edges {{ cursor node {{ tokenId }} }}
    nodes {{ {POSITION_FIELDS} }}
  }}
}}"""


@pytest.fixture
async def client(
    indexer_db: str, start_dashboard: StartDashboard
) -> AsyncIterator[httpx.AsyncClient]:
    running = await start_dashboard(indexer_db, dashboard_cache_ttl=0)
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as c:
        yield c


async def _walk(
    client: httpx.AsyncClient, first: int, **variables: Any
) -> tuple[list[dict[str, Any]], int, int]:
    """Every page of a positions query: (nodes, totalCount, pages)."""
    nodes: list[dict[str, Any]] = []
    after, pages = None, 0
    while True:
        page = (
            await data(
                client,
                POSITIONS,
                {
                    "orderBy": "OPENED",
                    "direction": "DESC",
                    **variables,
                    "first": first,
                    "after": after,
                },
            )
        )["positions"]
        pages += 1
        assert [e["node"]["tokenId"] for e in page["edges"]] == [
            n["tokenId"] for n in page["nodes"]
        ]
        assert page["pageInfo"]["endCursor"] == (
            page["edges"][-1]["cursor"] if page["edges"] else None
        )
        nodes += page["nodes"]
        if not page["pageInfo"]["hasNextPage"]:
            return nodes, page["totalCount"], pages
        after = page["pageInfo"]["endCursor"]


async def _rest(client: httpx.AsyncClient, path: str, **params: Any) -> dict[str, Any]:
    response = await client.get(path, params=params)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("gql_args", "rest_params"),
    [
        ({}, {}),
        ({"orderBy": "TOKEN_ID", "direction": "ASC"}, {"sort": "token_id", "order": "asc"}),
        ({"orderBy": "CLOSED", "direction": "DESC"}, {"sort": "closed", "order": "desc"}),
        ({"orderBy": "CLOSED", "direction": "ASC"}, {"sort": "closed", "order": "asc"}),
        ({"orderBy": "NOTIONAL"}, {"sort": "notional"}),
        ({"orderBy": "SIZE", "direction": "ASC"}, {"sort": "size", "order": "asc"}),
        ({"orderBy": "COLLATERAL"}, {"sort": "collateral"}),
        ({"filter": {"status": ["OPEN"]}}, {"status": "open"}),
        ({"filter": {"status": ["CLOSED", "LIQUIDATED"]}}, {"status": "closed,liquidated"}),
        ({"filter": {"market": "ETH/USDT", "status": ["LIQUIDATED"]}}, {"market": "ETH/USDT", "status": "liquidated"}),
        ({"filter": {"market": BTC}}, {"market": BTC}),
        ({"filter": {"market": "SOL/USDT"}}, {"market": "SOL/USDT"}),
        ({"filter": {"owner": BOB.upper().replace("0X", "0x")}}, {"owner": BOB}),
        ({"filter": {"openedFrom": 12, "openedTo": 15}}, {"opened_from": 12, "opened_to": 15}),
        ({"filter": {"closedFrom": 33}, "orderBy": "CLOSED"}, {"closed_from": 33, "sort": "closed"}),
        ({"filter": {"closedTo": 32, "owner": ALICE}}, {"closed_to": 32, "owner": ALICE}),
    ],
)  # fmt: skip
async def test_positions_equal_rest(
    client: httpx.AsyncClient, gql_args: dict[str, Any], rest_params: dict[str, Any]
) -> None:
    """Every page walked with cursors (2 rows a page) equals the REST list, field for field."""
    rest = await _rest(client, "/api/positions", **rest_params, limit=500)
    nodes, total, pages = await _walk(client, 2, **gql_args)
    assert snake(nodes) == rest["items"]
    assert total == rest["total"]
    assert pages == max(1, -(-rest["total"] // 2))
    # the same in one page, and REST's offset pages equal the cursor pages
    one, total_one, _ = await _walk(client, 500, **gql_args)
    assert one == nodes and total_one == total
    if rest["total"] > 3:
        second = await _rest(client, "/api/positions", **rest_params, limit=3, offset=3)
        assert snake(nodes[3:6]) == second["items"]


async def test_filters_select_what_they_say(client: httpx.AsyncClient) -> None:
    async def ids(**args: Any) -> list[int]:
        nodes, _, _ = await _walk(client, 500, **{"direction": "ASC", **args})
        return [n["tokenId"] for n in nodes]

    assert await ids(filter={"status": ["OPEN"]}) == [1, 2, 5, 7, 8]
    assert await ids(filter={"owner": BOB}) == [2, 4, 6]
    assert await ids(filter={"market": "DOGE/USDT"}) == []
    assert await ids(filter={"openedFrom": 13, "openedTo": 14}) == [4, 5]
    assert await ids(filter={"closedFrom": 33, "closedTo": 35}) == [4, 6]  # open ones left out
    assert await ids(orderBy="CLOSED") == [3, 4, 6, 1, 2, 5, 7, 8]  # still open last
    assert await ids(orderBy="CLOSED", direction="DESC") == [6, 4, 3, 8, 7, 5, 2, 1]


async def test_position_detail_markets_liquidations_funding_status_equal_rest(
    client: httpx.AsyncClient,
) -> None:
    query = f"""{{
      position(tokenId: 3) {{ {POSITION_FIELDS}
        events {{ name blockNumber blockTimestamp time txHash logIndex args display }} }}
      missing: position(tokenId: 999) {{ tokenId }}
      markets {{ {MARKET_FIELDS} }}
      eth: market(market: "ETH/USDT") {{ {MARKET_FIELDS} }}
      liquidations(first: 500) {{ totalCount nodes {{ {LIQUIDATION_FIELDS} }} }}
      btcLiq: liquidations(filter: {{market: "BTC/USDT", liquidator: "{KEEPER}"}}) {{
        nodes {{ tokenId }} }}
      fundingUpdates(first: 5000) {{ totalCount nodes {{ {FUNDING_FIELDS} }} }}
      ethFunding: fundingUpdates(filter: {{market: "ETH/USDT", since: {T0 + 3600},
          until: {T0 + 3 * 3600}}}, direction: ASC) {{ nodes {{ fundingTimestamp }} }}
      syncStatus {{ indexedBlock head lagBlocks secondsSinceUpdate contracts {{
          contractAddress lastSyncedBlock lastSyncedHash updatedAt secondsSinceUpdate }} }}
    }}"""
    d = snake(await data(client, query))
    rest_position = await _rest(client, "/api/positions/3")
    assert {**d["position"]} == rest_position
    assert d["missing"] is None
    markets = (await _rest(client, "/api/markets"))["items"]
    assert d["markets"] == markets
    assert d["eth"] == next(m for m in markets if m["market_id"] == ETH)
    liquidations = await _rest(client, "/api/liquidations", limit=500)
    assert d["liquidations"]["nodes"] == liquidations["items"]
    assert d["liquidations"]["total_count"] == liquidations["total"] == 2
    assert [n["token_id"] for n in d["btc_liq"]["nodes"]] == [4]
    funding = await _rest(client, "/api/funding", limit=5000)
    assert d["funding_updates"]["nodes"] == funding["items"]
    assert d["funding_updates"]["total_count"] == funding["total"] == 48
    assert [n["funding_timestamp"] for n in d["eth_funding"]["nodes"]] == [
        T0 + 3600,
        T0 + 2 * 3600,
        T0 + 3 * 3600,
    ]
    status = await _rest(client, "/api/status")
    sync = d["sync_status"]
    assert sync["indexed_block"] == 63 and sync["head"] is None and sync["lag_blocks"] is None
    for ours, theirs in zip(sync["contracts"], status["sync"], strict=True):
        assert ours.pop("seconds_since_update") >= 0
        theirs.pop("seconds_since_update")
        assert ours == theirs


async def test_cursor_pages_of_liquidations_and_funding(client: httpx.AsyncClient) -> None:
    seen, after = [], None
    while True:
        page = (
            await data(
                client,
                "query($after: String) { fundingUpdates(first: 10, after: $after, "
                'filter: {market: "BTC/USDT"}) { nodes { blockNumber logIndex } '
                "pageInfo { hasNextPage endCursor } } }",
                {"after": after},
            )
        )["fundingUpdates"]
        seen += [(n["blockNumber"], n["logIndex"]) for n in page["nodes"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    assert seen == sorted(seen, reverse=True) and len(seen) == 24 == len(set(seen))
    page = await data(
        client,
        "{ liquidations(first: 1, direction: ASC) { nodes { tokenId } pageInfo { endCursor } } }",
    )
    cursor = page["liquidations"]["pageInfo"]["endCursor"]
    assert page["liquidations"]["nodes"] == [{"tokenId": 4}]
    rest = await data(
        client,
        "query($a: String) { liquidations(direction: ASC, after: $a) { nodes { tokenId } } }",
        {"a": cursor},
    )
    assert rest["liquidations"]["nodes"] == [{"tokenId": 6}]


@pytest.mark.parametrize(
    ("query", "param", "words"),
    [
        ("{ positions(first: 501) { nodes { tokenId } } }", "first", "page-size limit"),
        ("{ positions(first: 0) { nodes { tokenId } } }", "first", "between 1 and 500"),
        ("{ fundingUpdates(first: 5001) { nodes { time } } }", "first", "page-size limit"),
        ('{ positions(filter: {owner: "bob"}) { nodes { tokenId } } }', "filter.owner", "address"),
        ('{ positions(filter: {market: "ETH"}) { nodes { tokenId } } }', "filter.market", "pair"),
        ("{ positions(filter: {status: []}) { nodes { tokenId } } }", "filter.status", "at least"),
        ("{ positions(filter: {openedFrom: 9, openedTo: 3}) { nodes { tokenId } } }",
         "filter.openedFrom", "later than openedTo"),
        ("{ positions(filter: {closedFrom: -1}) { nodes { tokenId } } }", "filter.closedFrom", "block"),
        ('{ positions(after: "not-a-cursor") { nodes { tokenId } } }', "after", "not a cursor"),
        ("{ liquidations(filter: {since: 10, until: 5}) { nodes { tokenId } } }",
         "filter.since", "later than until"),
        ('{ market(market: "nope") { pair } }', "market", "pair"),
        ("{ position(tokenId: -1) { tokenId } }", "tokenId", ">= 0"),
    ],
)  # fmt: skip
async def test_bad_arguments_name_the_problem(
    client: httpx.AsyncClient, query: str, param: str, words: str
) -> None:
    err = await error(client, query)
    assert err["extensions"]["code"] == "BAD_USER_INPUT" and err["extensions"]["param"] == param
    assert err["message"].startswith(f"{param}: ") and words in err["message"], err


async def test_a_cursor_only_works_for_its_own_ordering(client: httpx.AsyncClient) -> None:
    page = await data(client, "{ positions(first: 2) { pageInfo { endCursor } } }")
    cursor = page["positions"]["pageInfo"]["endCursor"]
    err = await error(
        client,
        "query($c: String) { positions(orderBy: NOTIONAL, after: $c) { nodes { tokenId } } }",
        {"c": cursor},
    )
    assert err["extensions"]["param"] == "after"
    assert "another ordering (positions:opened:desc)" in err["message"]


async def test_limits_refuse_with_a_clear_error(
    indexer_db: str, start_dashboard: StartDashboard
) -> None:
    running = await start_dashboard(
        indexer_db,
        dashboard_graphql_max_depth=3,
        dashboard_graphql_max_aliases=2,
        dashboard_graphql_max_tokens=300,
        dashboard_graphql_max_cost=1000,
    )
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as c:
        deep = await error(c, "{ positions { edges { node { wad { size } } } } }")
        assert "exceeds maximum operation depth of 3" in deep["message"]
        aliases = await error(c, "{ a: markets { pair } b: markets { pair } c: markets { pair } }")
        assert "3 aliases found. Allowed: 2" in aliases["message"]
        big = "{ " + " ".join("markets { pair }" for _ in range(100)) + " }"
        tokens = await error(c, big)
        assert "more than 300 tokens" in tokens["message"]
        costly = await error(c, "{ positions(first: 100) { nodes { events { name } } } }")
        assert costly["extensions"]["code"] == "COST_LIMIT"
        assert (
            "query cost 2101 is over the limit of 1000 (DASHBOARD_GRAPHQL_MAX_COST)"
            in (costly["message"])
        )
        # a variable's page size counts too; within the limit it is answered
        by_var = "query($n: Int!) { positions(first: $n) { nodes { events { name } } } }"
        assert (await error(c, by_var, {"n": 48}))["extensions"]["cost"] == 1 + 48 * 21
        ok = await gql(c, by_var, {"n": 47})
        assert not ok.get("errors") and len(ok["data"]["positions"]["nodes"]) == 8
        # and the server goes on answering
        assert (await gql(c, "{ __typename }"))["data"] == {"__typename": "Query"}
