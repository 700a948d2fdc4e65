"""GraphQL subscriptions over WebSocket (graphql-transport-ws): events published to the real
broker reach subscribers through the dashboard's one Kafka consumer and its hub."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import httpx
import pytest
import websockets
from dashboard_support import StartDashboard, envelope, publish, wait_feed_live

pytestmark = pytest.mark.integration

WAD = 10**18
SUBSCRIPTION = """
subscription($names: [String!], $token: BigInt, $market: String) {
  events(names: $names, tokenId: $token, market: $market) {
    eventId name market marketId tokenId blockNumber time reverted args display summary
    missedBefore
  }
}"""


async def _recv(ws: Any, within: float = 10.0) -> dict[str, Any]:
    return json.loads(await asyncio.wait_for(ws.recv(), within))


async def _subscribe(ws: Any, sid: str, **variables: Any) -> None:
    message = {
        "id": sid,
        "type": "subscribe",
        "payload": {"query": SUBSCRIPTION, "variables": variables},
    }
    await ws.send(json.dumps(message))


async def _hub_clients(url: str, want: int) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        for _ in range(200):
            if (await client.get("/api/status")).json()["websocket"]["clients"] == want:
                return
            await asyncio.sleep(0.05)
    pytest.fail(f"the hub never had {want} subscribers")


async def _error(ws: Any, sid: str) -> str:
    """The error message of subscription `sid` (an `error` message, or `next` with errors)."""
    while True:
        message = await _recv(ws)
        if message.get("id") != sid or message["type"] == "complete":
            continue
        if message["type"] == "error":
            return str(message["payload"][0]["message"])
        assert message["type"] == "next" and message["payload"].get("errors"), message
        return str(message["payload"]["errors"][0]["message"])


def _opened(token: int) -> Any:
    return envelope(
        "PositionOpened",
        token,
        {
            "tokenId": str(token),
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
        tx_hash=f"0x{token:064x}",
    )


async def test_subscription_receives_events_from_the_broker(
    indexer_db: str, topic: str, kafka_bootstrap: str, start_dashboard: StartDashboard
) -> None:
    running = await start_dashboard(indexer_db, topic)
    await wait_feed_live(running.url)
    gql_url = running.url.replace("http://", "ws://") + "/graphql"
    async with (
        websockets.connect(gql_url, subprotocols=["graphql-transport-ws"]) as ws,
        websockets.connect(running.ws_url) as page,
    ):
        assert ws.subprotocol == "graphql-transport-ws"
        await ws.send(json.dumps({"type": "connection_init"}))
        assert (await _recv(ws))["type"] == "connection_ack"
        assert (await _recv(page))["type"] == "hello"
        await _subscribe(ws, "opens", names=["PositionOpened"])
        await _subscribe(ws, "token42", token=42)
        await _subscribe(ws, "btc", market="BTC/USDT")
        await _hub_clients(running.url, 4)  # /ws and three subscriptions share one hub

        funding = envelope("FundingRateUpdated", None, {"fundingRate": str(10**14)}, tx_hash="0x01")
        await publish(kafka_bootstrap, topic, funding, _opened(41), _opened(42))

        got: dict[str, list[dict[str, Any]]] = {"opens": [], "token42": []}
        while len(got["opens"]) < 2 or len(got["token42"]) < 1:
            message = await _recv(ws)
            assert message["type"] == "next", message
            got[message["id"]].append(message["payload"]["data"]["events"])
        first = got["opens"][0]
        assert [e["tokenId"] for e in got["opens"]] == [41, 42]
        assert first["name"] == "PositionOpened" and first["market"] == "ETH/USDT"
        assert first["eventId"] == _opened(41).event_id and first["reverted"] is False
        assert first["display"]["size"] == "2.5" and first["args"]["size"] == str(25 * 10**17)
        assert first["summary"] == "long 2.5 ETH/USDT @ 2000 (5x, collateral 1000)"
        assert first["missedBefore"] == 0 and first["time"] is not None
        assert [e["tokenId"] for e in got["token42"]] == [42]
        # the page's /ws got all three from the same consumer
        names = [(await _recv(page))["event"]["name"] for _ in range(3)]
        assert names == ["FundingRateUpdated", "PositionOpened", "PositionOpened"]
        async with httpx.AsyncClient(base_url=running.url) as client:
            feed = (await client.get("/api/status")).json()["feed"]
        assert feed["consumed"] == 3 and feed["pushed"] == 3

        # a reorg's compensating event reaches the subscription too
        await publish(kafka_bootstrap, topic, _opened(41).as_reverted())
        seen = [await _recv(ws) for _ in range(1)]
        assert seen[0]["id"] == "opens" and seen[0]["payload"]["data"]["events"]["reverted"] is True

        # the BTC subscription saw nothing (every event was ETH/USDT); ending it frees its slot
        await ws.send(json.dumps({"id": "btc", "type": "complete"}))
        await _hub_clients(running.url, 3)
    await _hub_clients(running.url, 0)


async def test_bad_subscription_arguments_name_the_problem(
    indexer_db: str, start_dashboard: StartDashboard
) -> None:
    running = await start_dashboard(indexer_db)
    gql_url = running.url.replace("http://", "ws://") + "/graphql"
    async with websockets.connect(gql_url, subprotocols=["graphql-transport-ws"]) as ws:
        await ws.send(json.dumps({"type": "connection_init"}))
        assert (await _recv(ws))["type"] == "connection_ack"
        await _subscribe(ws, "1", names=["PositionOpened", "Bogus"])
        assert "names: unknown event name(s) Bogus" in (await _error(ws, "1"))
        await _subscribe(ws, "2", market="ETH")
        assert (await _error(ws, "2")).startswith("market: must be a pair")
    await _hub_clients(running.url, 0)
