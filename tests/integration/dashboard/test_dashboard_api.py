"""The dashboard's HTTP API against a real PostgreSQL holding the indexer's schema and rows."""

from __future__ import annotations

import math
import re
from collections.abc import AsyncIterator

import asyncpg
import httpx
import pytest
from dashboard_support import (
    ALICE,
    BOB,
    BTC,
    ETH,
    INDEXER_MIGRATIONS,
    KEEPER,
    SOL,
    T0,
    StartDashboard,
)

from shared.db import apply_migrations


@pytest.fixture
async def client(
    indexer_db: str, start_dashboard: StartDashboard
) -> AsyncIterator[httpx.AsyncClient]:
    running = await start_dashboard(indexer_db)
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as c:
        yield c


async def test_positions_paging_with_total(client: httpx.AsyncClient) -> None:
    first = (await client.get("/api/positions", params={"limit": 3})).json()
    assert first["total"] == 8
    assert [p["token_id"] for p in first["items"]] == [8, 7, 6]  # newest opened first
    assert (first["limit"], first["offset"], first["next_offset"]) == (3, 0, 3)
    last = (await client.get("/api/positions", params={"limit": 3, "offset": 6})).json()
    assert [p["token_id"] for p in last["items"]] == [2, 1]
    assert last["next_offset"] is None
    oldest = (await client.get("/api/positions?sort=token_id&order=asc&limit=2")).json()
    assert [p["token_id"] for p in oldest["items"]] == [1, 2]


async def test_position_values_are_human_readable(client: httpx.AsyncClient) -> None:
    items = (await client.get("/api/positions?sort=token_id&order=asc")).json()["items"]
    p1, p3 = items[0], items[2]
    assert p1["market"] == "ETH/USDT" and p1["side"] == "long" and p1["status"] == "open"
    assert (p1["collateral"], p1["leverage"], p1["notional"]) == ("1000", "5", "5000")
    assert p1["size"] == "2.5" and p1["entry_price"] == "2000"
    assert p1["wad"]["size"] == str(25 * 10**17)
    assert p1["opened_at"] == "2025-11-13T03:53:20Z" and p1["closed_at"] is None
    assert p3["status"] == "closed" and p3["exit_price"] == "2050"
    assert p3["realized_pnl"] == "180.9"
    negative = next(p for p in items if p["token_id"] == 4)
    assert negative["realized_pnl"] == "-760" and negative["side"] == "long"


async def test_position_filters(client: httpx.AsyncClient) -> None:
    async def ids(**params: str) -> list[int]:
        body = (await client.get("/api/positions", params=params | {"order": "asc"})).json()
        assert body["total"] == len(body["items"])
        return [p["token_id"] for p in body["items"]]

    assert await ids(status="open") == [1, 2, 5, 7, 8]
    assert await ids(status="closed,liquidated") == [3, 4, 6]
    assert await ids(status="liquidated", market="ETH/USDT") == [6]
    assert await ids(market=BTC) == [4, 5]
    assert await ids(market=BTC.upper().replace("0X", "0x")) == [4, 5]
    assert await ids(owner=BOB) == [2, 4, 6]
    assert await ids(owner=ALICE.upper().replace("0X", "0x"), status="open") == [1, 5, 7, 8]
    assert await ids(market="SOL/USDT") == [7]
    assert await ids(market="DOGE/USDT") == []
    assert await ids(status="all", market="", owner="") == [1, 2, 3, 4, 5, 6, 7, 8]


async def test_position_detail_and_404(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/positions/3")).json()
    assert body["token_id"] == 3 and body["status"] == "closed"
    assert [e["name"] for e in body["events"]] == ["PositionOpened", "PositionClosed"]
    assert body["events"][0]["display"]["size"] == "3"
    assert body["events"][1]["display"]["exitPrice"] == "2050"
    missing = await client.get("/api/positions/999")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    bad = await client.get("/api/positions/abc")
    assert bad.status_code == 400 and bad.json()["param"] == "token_id"


async def test_market_stats(client: httpx.AsyncClient) -> None:
    items = (await client.get("/api/markets")).json()["items"]
    by_pair = {m["pair"]: m for m in items}
    assert list(by_pair) == ["BTC/USDT", "ETH/USDT", "SOL/USDT"]
    eth, btc, sol = by_pair["ETH/USDT"], by_pair["BTC/USDT"], by_pair["SOL/USDT"]
    assert eth["market_id"] == ETH and btc["market_id"] == BTC and sol["market_id"] == SOL
    assert (eth["open_positions"], eth["closed_positions"], eth["liquidated_positions"]) == (
        3,
        1,
        1,
    )
    assert (eth["open_interest_long"], eth["open_interest_short"]) == ("5000", "8000")
    assert (btc["open_interest_long"], btc["open_interest_short"]) == ("0", "6000")
    assert btc["wad"]["open_size_short"] == str(6000 * 10**36 // (40200 * 10**18))
    assert btc["open_size_short"].startswith("0.149253731343283582")
    assert (eth["liquidations"], eth["liquidation_rewards"]) == (1, "3")
    assert (btc["liquidations"], btc["liquidation_rewards"]) == (1, "8")
    assert eth["last_liquidation_at"] is not None
    last_rate = round(math.sin(23 / 3.0) * 1.2e14 + 2e13)
    assert eth["wad"]["funding_rate"] == str(last_rate)
    assert btc["wad"]["funding_rate"] == str(-last_rate)
    assert eth["last_funding_time"] == T0 + 23 * 3600
    assert eth["funding_rate_pct"] is not None
    # SOL/USDT has positions but no markets row and no funding yet.
    assert sol["open_interest_long"] == "500" and sol["funding_rate"] is None
    assert sol["liquidations"] == 0 and sol["paused"] is False


async def test_funding_history(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/funding", params={"market": "ETH/USDT"})).json()
    assert body["total"] == 24
    times = [f["funding_timestamp"] for f in body["items"]]
    assert times == sorted(times, reverse=True)
    first = body["items"][-1]
    assert first["funding_rate"] == "0.00002" and first["funding_rate_pct"] == "0.002"
    assert first["market"] == "ETH/USDT" and first["time"] == "2025-11-13T02:13:20Z"
    ranged = (
        await client.get(
            "/api/markets/ETH/USDT/funding",
            params={"since": T0 + 3600, "until": T0 + 3 * 3600, "order": "asc"},
        )
    ).json()
    assert [f["funding_timestamp"] for f in ranged["items"]] == [
        T0 + 3600,
        T0 + 2 * 3600,
        T0 + 3 * 3600,
    ]
    by_id = (await client.get(f"/api/markets/{BTC}/funding", params={"limit": 2})).json()
    assert by_id["total"] == 24 and len(by_id["items"]) == 2
    assert by_id["items"][0]["funding_rate"].startswith("-")  # BTC mirrors ETH's rates
    everything = (await client.get("/api/funding", params={"limit": 1})).json()
    assert everything["total"] == 48


async def test_liquidations(client: httpx.AsyncClient) -> None:
    body = (await client.get("/api/liquidations")).json()
    assert body["total"] == 2
    assert [x["token_id"] for x in body["items"]] == [6, 4]  # newest first
    eth = body["items"][0]
    assert eth["market"] == "ETH/USDT" and eth["price"] == "1790" and eth["reward"] == "3"
    assert eth["owner_refund"] == "13.3" and eth["liquidator"] == KEEPER
    only_btc = (await client.get("/api/liquidations", params={"market": "BTC/USDT"})).json()
    assert [x["token_id"] for x in only_btc["items"]] == [4]
    by_keeper = (await client.get("/api/liquidations", params={"liquidator": KEEPER})).json()
    assert by_keeper["total"] == 2
    none = (await client.get("/api/liquidations", params={"owner": ALICE})).json()
    assert none == {"items": [], "total": 0, "limit": 50, "offset": 0, "next_offset": None}


@pytest.mark.parametrize(
    ("path", "param"),
    [
        ("/api/positions?limit=0", "limit"),
        ("/api/positions?limit=abc", "limit"),
        ("/api/positions?offset=-5", "offset"),
        ("/api/positions?status=pending", "status"),
        ("/api/positions?owner=bob", "owner"),
        ("/api/positions?market=ETH", "market"),
        ("/api/positions?sort=pnl", "sort"),
        ("/api/positions?limt=5", "limt"),
        ("/api/positions?limit=5&limit=6", "limit"),
        ("/api/liquidations?since=10&until=5", "since"),
        ("/api/liquidations?liquidator=0x12", "liquidator"),
        ("/api/funding?limit=100000", "limit"),
        ("/api/funding?order=sideways", "order"),
        ("/api/markets/nope/funding", "market"),
        ("/api/markets?x=1", "x"),
    ],
)
async def test_bad_parameters_give_400_naming_them(
    client: httpx.AsyncClient, path: str, param: str
) -> None:
    response = await client.get(path)
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["error"] == "bad_parameter" and body["param"] == param
    assert param in body["message"] or body["message"]


async def test_status_and_probes(client: httpx.AsyncClient) -> None:
    assert (await client.get("/healthz")).text == "ok"
    ready = await client.get("/readyz")
    assert ready.status_code == 200 and "database ok" in ready.text
    status = (await client.get("/api/status")).json()
    assert status["sync"][0]["last_synced_block"] == 63
    assert status["sync"][0]["seconds_since_update"] >= 0
    assert status["feed"] is None
    assert status["websocket"]["clients"] == 0


async def test_page_and_static_assets(client: httpx.AsyncClient) -> None:
    page = await client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "connect-src 'self'" in csp
    assert 'src="/static/app.js"' in page.text
    assert "http://" not in page.text and "https://" not in page.text  # nothing external
    js = await client.get("/static/app.js")
    assert js.status_code == 200 and "new WebSocket" in js.text
    assert js.headers["x-content-type-options"] == "nosniff"
    assert not re.search(r"\.(innerHTML|outerHTML)\s*=|insertAdjacentHTML", js.text)
    assert (await client.get("/static/style.css")).status_code == 200
    assert (await client.get("/static/../app.py")).status_code == 404


async def test_missing_schema_and_unreachable_database(
    fresh_db: str, start_dashboard: StartDashboard
) -> None:
    running = await start_dashboard(fresh_db)  # no migrations applied
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as c:
        r = await c.get("/api/positions")
        assert r.status_code == 503 and r.json()["error"] == "schema_missing"
        assert (await c.get("/readyz")).status_code == 200  # the database itself answers
    conn = await asyncpg.connect(fresh_db)
    try:
        await apply_migrations(conn, INDEXER_MIGRATIONS)
    finally:
        await conn.close()
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as c:
        empty = (await c.get("/api/positions")).json()
        assert empty["total"] == 0 and empty["items"] == []
        assert (await c.get("/api/markets")).json() == {"items": []}

    down = await start_dashboard("postgresql://nobody@127.0.0.1:1/none")
    async with httpx.AsyncClient(base_url=down.url, timeout=10) as c:
        assert (await c.get("/healthz")).status_code == 200
        assert (await c.get("/readyz")).status_code == 503
        r = await c.get("/api/markets")
        assert r.status_code == 503 and r.json()["error"] == "database_unavailable"
