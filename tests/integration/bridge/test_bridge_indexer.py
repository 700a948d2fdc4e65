"""The indexer's bridge mode follows the bridge on both anvils into PostgreSQL, and the
dashboard's API shows a deposit in flight until the relayer delivers it; a reorg on the remote
chain that drops a deposit drops it from the tables too."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from typing import Any

import httpx
from bridge_support import BridgeEnv, environ, rpc

from services.dashboard.app import create_app
from services.dashboard.settings import load_dashboard_settings
from services.indexer.app import open_app
from services.indexer.settings import load_indexer_settings

WAD = 10**18


async def _index(env: BridgeEnv, db: str, kafka: str) -> dict[str, Any]:
    """Run the indexer (main loop and bridge mode) until both chains are caught up."""
    settings = load_indexer_settings(
        rpc_url=env.stack.anvil.url,
        remote_rpc_url=env.stack.remote_anvil.url,
        deployment_file=env.deployment_path,
        db_uri=db,
        kafka_bootstrap_servers=kafka,
        kafka_topic="bridge-test",
        poll_interval_ms=100,
        _env_file=None,
    )
    async with open_app(settings, lock_wait=10) as app:
        assert app.bridge is not None, "the bridge mode is on"
        await asyncio.wait_for(app.run(asyncio.Event(), until_caught_up=True), 60)
        return app.status()


async def _api(db: str, kafka: str, query: str) -> dict[str, Any]:
    app = create_app(
        load_dashboard_settings(db_uri=db, kafka_bootstrap_servers=kafka,
                                dashboard_kafka_feed=False, dashboard_cache_ttl=0, _env_file=None)
    )  # fmt: skip
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://dashboard") as client:
            resp = await client.get(f"/api/bridge/transfers{query}")
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def _relay(env: BridgeEnv) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "relayer", "--until-idle"],
        env={**environ(), **env.relayer_env(), "HEALTH_PORT": "0"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]


async def test_deposits_in_flight_then_delivered_and_a_reorg_rolls_back(
    bridged: BridgeEnv, fresh_db: str, kafka_bootstrap: str
) -> None:
    env = bridged
    trader = env.home.eth.accounts[6]
    sent = env.bridge.deposit(trader, 1234 * WAD)
    status = await _index(env, fresh_db, kafka_bootstrap)
    assert status["bridge"]["remote"]["synced_to"] >= sent.block_number

    body = await _api(fresh_db, kafka_bootstrap, "?status=in_flight&direction=deposit")
    assert body["in_flight"]["deposit"]["count"] == 1
    assert body["in_flight"]["deposit"]["amount"] == "1234"
    [item] = body["items"]
    assert item["guid"] == sent.guid and item["account"] == trader.lower()
    assert item["status"] == "in_flight" and item["src_chain_id"] == 31338

    await asyncio.to_thread(_relay, env)
    await _index(env, fresh_db, kafka_bootstrap)
    body = await _api(fresh_db, kafka_bootstrap, "?status=all")
    [item] = body["items"]
    assert item["status"] == "delivered" and item["dst_chain_id"] == 31337
    assert body["in_flight"]["deposit"]["count"] == 0

    # a second deposit, indexed while in flight, then reorged away on the remote chain
    gone = env.bridge.deposit(trader, 5 * WAD)
    await _index(env, fresh_db, kafka_bootstrap)
    body = await _api(fresh_db, kafka_bootstrap, "?status=in_flight")
    assert [i["guid"] for i in body["items"]] == [gone.guid]
    head = env.remote.eth.block_number
    rpc(env.remote, "anvil_reorg", [head - gone.block_number + 2, []])
    rpc(env.remote, "evm_mine", [])
    await _index(env, fresh_db, kafka_bootstrap)
    body = await _api(fresh_db, kafka_bootstrap, "?status=all")
    assert [i["guid"] for i in body["items"]] == [sent.guid], "the reorged deposit is gone"
    assert body["in_flight"]["deposit"]["count"] == 0

    # filters are checked
    bad = create_app(
        load_dashboard_settings(db_uri=fresh_db, kafka_bootstrap_servers=kafka_bootstrap,
                                dashboard_kafka_feed=False, _env_file=None)
    )  # fmt: skip
    async with bad.router.lifespan_context(bad):
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=bad), base_url="http://dashboard"
        ) as client:
            resp = await client.get("/api/bridge/transfers?status=lost")
    assert resp.status_code == 400 and resp.json()["param"] == "status"
