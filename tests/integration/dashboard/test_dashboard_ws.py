"""/ws: events published to Kafka reach every connected WebSocket, formatted for display."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import httpx
import pytest
import websockets
from dashboard_support import StartDashboard, envelope, publish, wait_feed_live

WAD = 10**18


async def _next(ws: Any, within: float = 10.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def test_kafka_event_reaches_every_socket(
    indexer_db: str, topic: str, kafka_bootstrap: str, start_dashboard: StartDashboard
) -> None:
    running = await start_dashboard(indexer_db, topic)
    await wait_feed_live(running.url)
    async with (
        websockets.connect(running.ws_url) as first,
        websockets.connect(running.ws_url) as second,
    ):
        for ws in (first, second):
            hello = await _next(ws)
            assert hello["type"] == "hello" and hello["topic"] == topic
            assert hello["feed"]["live"] is True

        opened = envelope(
            "PositionOpened",
            42,
            {
                "tokenId": "42",
                "owner": "0x" + "a1" * 20,
                "marketId": "0x" + "00" * 32,
                "isLong": True,
                "collateral": str(1000 * WAD),
                "leverage": str(5 * WAD),
                "size": str(25 * 10**17),
                "notional": str(5000 * WAD),
                "entryPrice": str(2000 * WAD),
                "fee": str(5 * WAD),
            },
        )
        # A malformed message first: skipped and counted, the feed goes on.
        await publish(kafka_bootstrap, topic, b'{"v": 1, "name": "Bogus"}', opened, opened)

        for ws in (first, second):
            message = await _next(ws)
            assert message["type"] == "event"
            event = message["event"]
            assert event["event_id"] == opened.event_id
            assert event["name"] == "PositionOpened" and event["token_id"] == 42
            assert event["market"] == "ETH/USDT"
            assert event["display"]["size"] == "2.5" and event["display"]["leverage"] == "5"
            assert event["args"]["size"] == str(25 * 10**17)
            assert event["summary"] == "long 2.5 ETH/USDT @ 2000 (5x, collateral 1000)"

        # The redelivered copy is not pushed; a compensating (reverted) event is.
        await publish(kafka_bootstrap, topic, opened.as_reverted())
        for ws in (first, second):
            message = await _next(ws)
            assert message["event"]["event_id"] == opened.event_id
            assert message["event"]["reverted"] is True

        async with httpx.AsyncClient(base_url=running.url) as client:
            status = (await client.get("/api/status")).json()
        assert status["websocket"]["clients"] == 2
        feed = status["feed"]
        assert (feed["pushed"], feed["duplicates"], feed["malformed"]) == (2, 1, 1)

    # Disconnected sockets are unsubscribed.
    async with httpx.AsyncClient(base_url=running.url) as client:
        for _ in range(50):
            if (await client.get("/api/status")).json()["websocket"]["clients"] == 0:
                break
            await asyncio.sleep(0.05)
        else:
            pytest.fail("closed sockets still subscribed")


async def test_client_limit_and_starting_at_latest(
    indexer_db: str, topic: str, kafka_bootstrap: str, start_dashboard: StartDashboard
) -> None:
    # Published before the dashboard starts: not replayed (the feed starts at the latest offset).
    old = envelope("FundingRateUpdated", None, {"fundingRate": str(10**14)}, tx_hash="0x01")
    await publish(kafka_bootstrap, topic, old)
    running = await start_dashboard(indexer_db, topic, dashboard_max_clients=1)
    await wait_feed_live(running.url)
    async with websockets.connect(running.ws_url) as ws:
        assert (await _next(ws))["type"] == "hello"
        async with websockets.connect(running.ws_url) as extra:
            with pytest.raises(websockets.ConnectionClosed) as closed:
                await asyncio.wait_for(extra.recv(), 5)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1013
        new = envelope("FundingRateUpdated", None, {"fundingRate": str(-(10**14))}, tx_hash="0x02")
        await publish(kafka_bootstrap, topic, new)
        message = await _next(ws)
        assert message["event"]["event_id"] == new.event_id
        assert message["event"]["summary"] == "funding rate -0.01% on ETH/USDT"


async def test_slow_socket_does_not_stall_others(
    indexer_db: str, start_dashboard: StartDashboard
) -> None:
    """A socket that stops reading loses its own oldest messages (and is told how many); the
    others get every message in order."""
    running = await start_dashboard(indexer_db, dashboard_ws_queue=8)
    hub = running.app.state.dashboard.hub
    padding = "x" * 64_000  # large frames fill the slow socket's TCP buffers quickly
    count = 400
    async with (
        websockets.connect(running.ws_url, max_size=None, compression=None) as fast,
        websockets.connect(running.ws_url, max_size=None, compression=None, max_queue=1) as slow,
    ):
        for ws in (fast, slow):
            assert (await _next(ws))["type"] == "hello"
        for i in range(count):
            hub.publish(json.dumps({"type": "event", "seq": i, "pad": padding}))
            message = await _next(fast, 5)  # never held up by the slow one
            assert message["type"] == "event" and message["seq"] == i
        assert hub.stats()["dropped"] > 0
        seen: list[int] = []
        lagged = 0
        while not seen or seen[-1] != count - 1:
            message = await _next(slow, 10)
            if message["type"] == "lagged":
                lagged += message["dropped"]
            else:
                seen.append(message["seq"])
        assert lagged > 0 and len(seen) + lagged == count
        assert seen == sorted(seen)  # what arrives is in order, the newest always last


async def test_live_event_invalidates_cached_answers(
    indexer_db: str, topic: str, kafka_bootstrap: str, start_dashboard: StartDashboard
) -> None:
    running = await start_dashboard(indexer_db, topic, dashboard_cache_ttl=60)
    await wait_feed_live(running.url)
    async with (
        httpx.AsyncClient(base_url=running.url) as client,
        websockets.connect(running.ws_url) as ws,
    ):
        assert (await _next(ws))["type"] == "hello"
        assert (await client.get("/api/positions")).json()["total"] == 8
        assert (await client.get("/api/positions?status=open")).json()["total"] == 5
        conn = await asyncpg.connect(indexer_db)
        try:
            await conn.execute(
                "UPDATE positions SET status = 'closed', closed_block = 80 WHERE token_id = 1"
            )
        finally:
            await conn.close()
        # Within the TTL and without an event, the cached answer is served.
        assert (await client.get("/api/positions?status=open")).json()["total"] == 5
        assert (await client.get("/api/positions")).json()["items"][-1]["status"] == "open"
        closed = envelope("PositionClosed", 1, {"tokenId": "1"}, tx_hash="0x80")
        await publish(kafka_bootstrap, topic, closed)
        assert (await _next(ws))["event"]["event_id"] == closed.event_id
        # The event dropped the cache before it reached the socket.
        assert (await client.get("/api/positions")).json()["items"][-1]["status"] == "closed"
        assert (await client.get("/api/positions?status=open")).json()["total"] == 4
        assert (await client.get("/api/status")).json()["cache"]["hits"] >= 1
