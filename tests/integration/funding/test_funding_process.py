"""`perpex funding` as a process: restarted mid-window it neither repeats nor misses a window;
SIGTERM exits 0 and frees the leader lock; `perpex funding status`; bad config exits 2; /metrics on
its HEALTH_PORT (read with Prometheus' text parser) tells each market's next window and the
outcome of its last attempt."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import httpx
from funding_support import H8, Chain, wait_for
from metrics_scrape import Scrape, scrape_until

from perpex_dev.devstack.accounts import FUNDING, anvil_key
from perpex_dev.devstack.ports import free_port
from services.funding.schedule import window_index

REPO = Path(__file__).resolve().parents[3]
ARGV = [sys.executable, "-m", "perpex_cli.main", "funding"]


def _env(rpc_url: str, deployment_file: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "FUNDING_", "LEASE_", "POD_"))
        and k not in {"PRIVATE_KEY", "MARKETS", "POSITION_MANAGER_ADDRESS", "LEADER_ELECTION"}
    }
    env.update(
        {
            "RPC_URL": rpc_url,
            "CHAIN_ID": "31337",
            "DEPLOYMENT_FILE": str(deployment_file),
            "FUNDING_PRIVATE_KEY": anvil_key(FUNDING).get_secret_value(),
            "FUNDING_GRACE_S": "0",
            "FUNDING_MAX_SLEEP_S": "0.3",
            "POLL_INTERVAL_MS": "100",
            "LEADER_RETRY_S": "0.3",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "HEALTH_PORT": "0",
        }
    )
    env.update(extra)
    return env


def _start(env: dict[str, str], log: Path, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [*ARGV, *args], cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


async def _status(port: int) -> dict[str, Any] | None:
    try:
        async with httpx.AsyncClient(timeout=2) as client:
            resp = await client.get(f"http://127.0.0.1:{port}/status")
        return dict(resp.json())
    except (httpx.HTTPError, ValueError):
        return None


async def _ready(port: int, proc: subprocess.Popen[bytes], log: Path) -> dict[str, Any]:
    async def check() -> dict[str, Any] | None:
        assert proc.poll() is None, _tail(log)
        status = await _status(port)
        return status if status and status.get("ready") else None

    return dict(await wait_for(check, "the updater to be ready", 60, poll=0.2))


def _tail(log: Path) -> str:
    return log.read_text()[-3000:]


def _stop(proc: subprocess.Popen[bytes], log: Path) -> None:
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0, log.read_text()[-3000:]


async def _advisory_locks(dsn: str) -> int:
    conn = await asyncpg.connect(dsn)
    try:
        return int(await conn.fetchval("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory'"))
    finally:
        await conn.close()


async def test_restart_mid_window_neither_repeats_nor_misses(
    funded: Chain,
    deployment_file: Path,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = _env(
        rpc_url,
        deployment_file,
        LEADER_ELECTION="postgres",
        DB_URI=fresh_db,
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        KAFKA_TOPIC=topic,
        HEALTH_PORT=str(port),
    )
    log = tmp_path / "funding.log"
    anchors = {p: funded.last(p) for p in funded.pairs}
    nonce0 = funded.wallet_nonce()

    async def window_updated() -> None:
        before = {p: funded.last(p) for p in funded.pairs}
        await wait_for(lambda: all(funded.last(p) > before[p] for p in funded.pairs), "updates", 30)

    # window 1 by the first process
    proc = _start(env, log)
    try:
        status = await _ready(port, proc, log)
        assert status["leader"]["leader"] is True and status["wallet"] == funded.funding_address

        async def kafka_connected() -> bool:
            return bool(((await _status(port)) or {}).get("kafka", {}).get("connected"))

        await wait_for(kafka_connected, "the Kafka listener", 30, poll=0.2)
        opened = asyncio.create_task(window_updated())
        funded.open_next_window()
        await opened
        await asyncio.sleep(1.0)
        # half-way through window 2, it stops
        funded.advance(H8 // 2)
        _stop(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert await _advisory_locks(fresh_db) == 0  # the leader lock went with it
    assert funded.wallet_nonce() - nonce0 == 2

    # restarted mid-window: the window it already updated is not updated again
    proc = _start(env, log)
    try:
        status = await _ready(port, proc, log)
        await asyncio.sleep(1.5)
        assert funded.wallet_nonce() - nonce0 == 2, "a window was repeated after the restart"
        status = await _status(port) or {}
        for market in status["markets"]:
            assert market["decision"] == "wait" and market["seconds_to_next_window"] > 0
            assert market["last_update_by"] is None  # learnt from the chain, not from memory
        opened = asyncio.create_task(window_updated())
        funded.open_next_window()  # window 2
        await opened
        _stop(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()

    # window 3 opens while no updater runs; the next start catches up at once
    funded.open_next_window()
    proc = _start(env, log)
    try:
        await wait_for(
            lambda: all(funded.last(p) > funded.now() - 60 for p in funded.pairs), "catch-up", 60
        )
        await asyncio.sleep(1.0)
        _stop(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()

    for pair in funded.pairs:
        cells = Counter(
            window_index(u["timestamp"], anchors[pair], H8) for u in funded.updates(pair)
        )
        assert cells == {1: 1, 2: 1, 3: 1}, (pair, funded.updates(pair))
    assert funded.wallet_nonce() - nonce0 == 6
    assert funded.wallet_receipts_ok() == [1] * 6
    text = log.read_text()
    assert "Traceback" not in text and " ERROR " not in text, text[-3000:]
    assert text.count("leadership perpex-funding-all acquired") == 3
    assert "funding updater stopped" in text


async def test_metrics_from_the_running_updater(
    funded: Chain,
    deployment_file: Path,
    rpc_url: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    port = free_port()
    env = _env(
        rpc_url,
        deployment_file,
        LEADER_ELECTION="none",
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        KAFKA_TOPIC=topic,
        HEALTH_PORT=str(port),
    )
    log = tmp_path / "funding.log"
    proc = _start(env, log)
    try:
        await _ready(port, proc, log)

        def markets_read(m: Scrape) -> bool:
            return len(m.samples("perpex_funding_next_update_time")) == len(funded.pairs)

        m = await scrape_until(port, markets_read, within=30, what="every market read")
        m.has(
            "perpex_funding_next_update_time",
            "perpex_funding_seconds_to_next_window",
            "perpex_funding_overdue_seconds",
            "perpex_funding_rate",
            "perpex_funding_last_update_time",
            "perpex_funding_wallet_balance_eth",
            "perpex_funding_leader",
            "perpex_service_ready",
            "perpex_service_dependency_up",
        )
        for pair in funded.pairs:
            assert m.value("perpex_funding_next_update_time", market=pair) == funded.next_time(pair)
            assert m.value("perpex_funding_seconds_to_next_window", market=pair) > 0
            assert m.value("perpex_funding_last_update_time", market=pair) == funded.last(pair)
        assert m.value("perpex_funding_leader") == 1
        assert m.value("perpex_funding_wallet_balance_eth") > 1
        assert m.value("perpex_service_dependency_up", dependency="RPC") == 1
        assert "perpex_funding_last_outcome" not in m.families  # nothing attempted yet

        before = {p: funded.last(p) for p in funded.pairs}
        funded.open_next_window()

        def updated(m: Scrape) -> bool:
            return all(
                m.value("perpex_funding_last_outcome", market=p, outcome="confirmed") == 1
                and m.value("perpex_funding_last_update_time", market=p) > before[p]
                for p in funded.pairs
            )

        m = await scrape_until(port, updated, within=30, what="every market updated")
        for pair in funded.pairs:
            outcomes = {
                s.labels["outcome"]: s.value
                for s in m.samples("perpex_funding_last_outcome", market=pair)
            }
            assert sum(outcomes.values()) == 1 and outcomes["confirmed"] == 1, outcomes
            assert m.value("perpex_funding_updates_sent_total", market=pair) == 1
            assert m.value("perpex_funding_updates_confirmed_total", market=pair) == 1
            assert m.value("perpex_funding_next_update_time", market=pair) == funded.next_time(pair)
            assert m.value("perpex_funding_next_update_time", market=pair) > funded.now()
        _stop(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()


def test_status_command(funded: Chain, deployment_file: Path, rpc_url: str) -> None:
    env = _env(rpc_url, deployment_file)
    del env["FUNDING_PRIVATE_KEY"]  # status reads only: no wallet needed
    funded.advance(3600)
    table = subprocess.run(
        [*ARGV, "status"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].startswith("MARKET")
    rows = {line.split()[0]: line for line in lines[1:-1]}
    assert set(rows) == {"ETH/USDT", "BTC/USDT"}
    assert "in 7h 00m" in rows["ETH/USDT"] or "in 6h 59m" in rows["ETH/USDT"]
    as_json = subprocess.run(
        [*ARGV, "status", "--json"], cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert as_json.returncode == 0, as_json.stderr
    markets = {m["market"]: m for m in json.loads(as_json.stdout)["markets"]}
    eth = markets["ETH/USDT"]
    assert eth["last_funding_time"] == funded.last("ETH/USDT")
    assert eth["funding_interval_s"] == H8
    assert eth["seconds_to_next_window"] == funded.next_time("ETH/USDT") - funded.now()
    assert eth["funding_rate_pct"] == "0" and eth["due"] is False


def test_bad_configuration_exits_2(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"PRIVATE_KEY", "FUNDING_PRIVATE_KEY", "DEPLOYMENT_FILE", "RPC_URL"}
    }
    env.update({"RPC_URL": "ftp://nope", "FUNDING_PRIVATE_KEY": "0x" + "zz" * 32})
    proc = subprocess.run(
        [*ARGV, "run"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert "RPC_URL" in proc.stderr and "FUNDING_PRIVATE_KEY" in proc.stderr
    assert "zz" * 8 not in proc.stderr


async def test_killed_mid_send_the_restart_waits_instead_of_resending(
    funded: Chain, deployment_file: Path, rpc_url: str, fresh_db: str, tmp_path: Path
) -> None:
    """kill -9 while its transactions sit in the mempool: the next process sees the wallet's
    in-flight transactions, waits for them and sends nothing for that window."""
    port = free_port()
    env = _env(
        rpc_url,
        deployment_file,
        LEADER_ELECTION="postgres",
        DB_URI=fresh_db,
        KAFKA_LISTEN="false",
        HEALTH_PORT=str(port),
    )
    log = tmp_path / "funding.log"
    nonce0 = funded.wallet_nonce()

    def pending_nonce() -> int:
        return int(funded.w3.eth.get_transaction_count(funded.funding_address, "pending"))

    proc = _start(env, log)
    try:
        await _ready(port, proc, log)
        funded.rpc("evm_setAutomine", [False])
        funded.open_next_window()  # evm_mine still mines, on demand
        await wait_for(lambda: pending_nonce() == nonce0 + 2, "both sends in the mempool", 30)
        proc.kill()
        proc.wait(timeout=10)
        proc = _start(env, log)
        await _ready(port, proc, log)
        await asyncio.sleep(1.5)
        assert pending_nonce() == nonce0 + 2, "the restart sent again"
        assert funded.wallet_nonce() == nonce0
        funded.rpc("evm_mine", [])  # the killed process's transactions land
        await wait_for(
            lambda: all(funded.last(p) >= funded.now() - 5 for p in funded.pairs), "updates"
        )
        await asyncio.sleep(1.5)
        funded.rpc("evm_mine", [])  # anything sent after the fence would land now
        assert funded.wallet_nonce() == nonce0 + 2
        _stop(proc, log)
    finally:
        funded.rpc("evm_setAutomine", [True])
        if proc.poll() is None:
            proc.kill()
    assert funded.wallet_receipts_ok() == [1, 1]
    for pair in funded.pairs:
        assert len(funded.updates(pair)) == 1
    assert "in-flight transaction(s)" in log.read_text()
