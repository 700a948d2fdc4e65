"""`perpex dashboard` as a real process: configuration errors exit 2; it serves the API and /ws on
DASHBOARD_PORT, the probes and /metrics (read with Prometheus' text parser: the WebSocket
clients) on HEALTH_PORT, and SIGTERM stops it cleanly with exit 0."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
import websockets
from dashboard_support import envelope, publish
from metrics_scrape import scrape, scrape_until

from perpex_dev.devstack.ports import free_ports

REPO = Path(__file__).resolve().parents[3]


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DASHBOARD_", "KAFKA_", "OTEL_"))  # nothing exported over OTLP
    }
    env.pop("DB_URI", None)
    env["PYTHONPATH"] = str(REPO)
    env.update(extra)
    return env


def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "dashboard"],
        env=_env(DASHBOARD_PORT="eighty", DB_URI="mysql://nope", HEALTH_PORT="0"),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 2
    assert "DASHBOARD_PORT" in result.stderr and "DB_URI" in result.stderr


async def test_process_serves_and_stops_on_sigterm(
    indexer_db: str, topic: str, kafka_bootstrap: str, tmp_path: Path
) -> None:
    port, health_port = free_ports(2)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "perpex_cli.main",
        "dashboard",
        "--host",
        "127.0.0.1",
        env=_env(
            DASHBOARD_PORT=str(port),
            HEALTH_PORT=str(health_port),
            DB_URI=indexer_db,
            KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
            KAFKA_TOPIC=topic,
        ),
        cwd=tmp_path,
        stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=5) as client:
            for _ in range(300):
                try:
                    ready = await client.get("/readyz")
                    if ready.status_code == 200 and "feed live" in ready.text:
                        break
                except httpx.TransportError:
                    pass
                assert proc.returncode is None, "dashboard exited early"
                await asyncio.sleep(0.1)
            else:
                pytest.fail("dashboard never became ready with a live feed")
            assert (await client.get("/api/positions")).json()["total"] == 8
            # The probes alone on HEALTH_PORT, as for every other service.
            probe = f"http://127.0.0.1:{health_port}"
            assert (await client.get(probe + "/healthz")).text == "ok"
            assert "database ok" in (await client.get(probe + "/readyz")).text
            assert (await client.get(probe + "/api/positions")).status_code == 404
        m = await scrape(health_port)
        m.has(
            "perpex_dashboard_websocket_clients",
            "perpex_dashboard_websocket_messages",
            "perpex_dashboard_feed_live",
            "perpex_service_ready",
            "perpex_service_alive",
        )
        assert m.value("perpex_dashboard_websocket_clients") == 0
        assert m.value("perpex_dashboard_feed_live") == 1
        assert m.value("perpex_service_ready") == 1
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as ws:
            assert json.loads(await asyncio.wait_for(ws.recv(), 10))["type"] == "hello"
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws") as second:
                assert json.loads(await asyncio.wait_for(second.recv(), 10))["type"] == "hello"
                m = await scrape(health_port)
                assert m.value("perpex_dashboard_websocket_clients") == 2
            await scrape_until(
                health_port, lambda m: m.value("perpex_dashboard_websocket_clients") == 1
            )
            event = envelope("MarketPaused", None, {"paused": True}, tx_hash="0xaa")
            await publish(kafka_bootstrap, topic, event)
            message = json.loads(await asyncio.wait_for(ws.recv(), 10))
            assert message["event"]["summary"] == "market ETH/USDT paused"
            m = await scrape(health_port)
            assert m.value("perpex_dashboard_websocket_messages_total") >= 1
            proc.send_signal(signal.SIGTERM)
            # The open socket is closed by the server, not left hanging.
            with pytest.raises(websockets.ConnectionClosed):
                await asyncio.wait_for(ws.recv(), 10)
        assert await asyncio.wait_for(proc.wait(), 15) == 0
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
