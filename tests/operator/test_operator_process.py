"""`perpex operator` as a process, the way the container runs it: kopf's own login from a
kubeconfig (pointing at the kmock emulator, through a TCP proxy that keeps the API away for the
first ~10 s: the operator waits for it, not ready, and becomes ready without a restart), the
health endpoints, /metrics (read with Prometheus' text parser: the reconciles and the markets by
state), and a graceful SIGTERM."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import sys
from pathlib import Path

import aiohttp
from metrics_scrape import Scrape, scrape, scrape_until
from operator_harness import DEPLOY, ROOT, OperatorEnv, market_spec, perpmarket

from perpex_dev.devstack.tcp_proxy import TcpProxy


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def http_status(url: str) -> int | None:
    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return resp.status
    except aiohttp.ClientError:
        return None


async def test_perpex_operator_process_reconciles_and_stops_on_sigterm(
    emulator: OperatorEnv, tmp_path: Path
):
    api = await TcpProxy.for_url(emulator.base).start(listening=False)  # the API is away
    try:
        await _run(emulator, tmp_path, api)
    finally:
        await api.stop()


async def _run(emulator: OperatorEnv, tmp_path: Path, api: TcpProxy) -> None:
    kubeconfig = tmp_path / "kubeconfig.json"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": f"http://{api.address}"}}],
                "users": [{"name": "test", "user": {"token": "test-token"}}],
                "contexts": [{"name": "test", "context": {"cluster": "emulator", "user": "test"}}],
                "current-context": "test",
            }
        )
    )
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("KUBERNETES_", "PERPEX_"))},
        "KUBECONFIG": str(kubeconfig),
        "HEALTH_PORT": str(port),
        "PERPEX_OPERATOR_IMAGE": "perpex:process-test",
        "PERPEX_OPERATOR_STATUS_INTERVAL": "1",
        "PERPEX_WORKLOAD_ENV_KAFKA_TOPIC": "perpex.events",
    }
    perpex = Path(sys.executable).with_name("perpex")
    proc = await asyncio.create_subprocess_exec(
        str(perpex),
        "operator",
        "--standalone",
        cwd=str(ROOT),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:
        readyz = f"http://127.0.0.1:{port}/readyz"
        healthz = f"http://127.0.0.1:{port}/healthz"

        async def poll(url: str) -> bool:
            return await http_status(url) == 200

        # ~10 s without the API: alive, probes served, not ready
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 10.0
        while loop.time() < deadline:
            assert proc.returncode is None, "the operator exited while the API was away"
            assert not await poll(readyz)
            await asyncio.sleep(0.25)
        assert await poll(healthz)
        m = await scrape(port)
        assert m.value("perpex_service_ready") == 0
        assert m.value("perpex_service_alive") == 1
        assert m.value("perpex_service_dependency_up", dependency="Kubernetes API") == 0
        await api.up()
        for _ in range(300):  # up to 30 s: a cold interpreter importing kopf on a busy CI box
            if await poll(readyz):
                break
            assert proc.returncode is None, "the operator exited early"
            await asyncio.sleep(0.1)
        else:
            raise AssertionError("/readyz never answered 200")
        assert await poll(healthz)

        await emulator.create(perpmarket("eth-usdt", market_spec()))
        keeper = await emulator.wait_for(
            lambda: emulator.get(DEPLOY, "perpex-eth-usdt-keeper"), "keeper Deployment", within=30
        )
        image = keeper["spec"]["template"]["spec"]["containers"][0]["image"]
        assert image == "perpex:process-test"
        await emulator.wait_for(
            lambda: emulator.condition("eth-usdt", "Progressing"), "status", within=30
        )

        def reconciled(m: Scrape) -> bool:
            markets = {s.labels["state"]: s.value for s in m.samples("perpex_operator_markets")}
            # the create handler's reconcile (the status timer's may come first)
            changes = m.samples("perpex_operator_reconciles_total", trigger="change")
            return sum(markets.values()) == 1 and bool(changes)

        m = await scrape_until(port, reconciled, within=30, what="the market reconciled")
        m.has(
            "perpex_operator_reconciles",
            "perpex_operator_reconcile_seconds",
            "perpex_operator_markets",
            "perpex_service_ready",
        )
        assert m.value("perpex_service_ready") == 1
        assert m.value("perpex_service_dependency_up", dependency="Kubernetes API") == 1
        changes = m.samples("perpex_operator_reconciles_total", trigger="change")
        assert sum(s.value for s in changes) >= 1, changes
        assert {s.labels["outcome"] for s in changes} <= {"ok", "degraded"}, changes
        assert m.value("perpex_operator_reconcile_seconds_count", trigger="change") >= 1
        # kopf authenticated with the kubeconfig's token.
        assert any(
            r.headers.get("Authorization") == "Bearer test-token" for r in list(emulator.kmock)
        )
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
        out, _ = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == 0, out.decode()[-3000:]
    assert b"test-token" not in out  # credentials are never logged
    assert b"waiting for Kubernetes API at kubeconfig" in out, out.decode()[-3000:]
