"""Helpers for the indexer's integration tests: deploy, run, and compare the database and the
Kafka topic with the chain. Tests on the session's anvil take its deployment from the `deployed`
fixture (tests/conftest.py); `deploy` runs the deploy flow again (a chain of a test's own)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import asyncpg
from eth_abi import decode as abi_decode
from web3 import Web3

from perpex_dev.anvil import DEV_KEYS
from perpex_dev.loadgen import AnvilRpc
from services.indexer.app import open_app
from services.indexer.event_specs import load_event_table
from services.indexer.settings import IndexerSettings
from shared.chain.abi import load_abi
from shared.chain.deploy import deploy_local
from shared.chain.deployment import Deployment
from shared.events.schema import EventEnvelope, decode_event
from shared.kafka import make_consumer

REPO = Path(__file__).resolve().parents[3]
POSITION_TYPES = "(bytes32,bool,uint256,uint256,uint256,uint256,uint256,int256,uint64,uint64)"


def deploy(rpc_url: str, folder: Path) -> tuple[Deployment, Path]:
    """Deploy with the project's deploy flow (a `forge script` run)."""
    path = folder / f"deployment-{uuid.uuid4().hex[:6]}.json"
    return deploy_local(rpc_url, DEV_KEYS[0], path), path


def settings_for(
    rpc_url: str, dsn: str, bootstrap: str, topic: str, deployment_file: Path, **over: Any
) -> IndexerSettings:
    values: dict[str, Any] = {
        "rpc_url": rpc_url,
        "db_uri": dsn,
        "kafka_bootstrap_servers": bootstrap,
        "kafka_topic": topic,
        "deployment_file": deployment_file,
        "poll_interval_ms": 100,
        "max_retries": 3,
        "markets": "",
        "position_manager_address": None,
        "position_nft_address": None,
    }
    values.update(over)
    return IndexerSettings(**values)


def subprocess_env(settings: IndexerSettings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        {
            "RPC_URL": settings.rpc_url,
            "DB_URI": settings.db_uri,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "KAFKA_TOPIC": settings.kafka_topic,
            "DEPLOYMENT_FILE": str(settings.deployment_file),
            "POLL_INTERVAL_MS": str(settings.poll_interval_ms),
            "CHUNK_SIZE": str(settings.chunk_size),
            "MAX_CHUNK_SIZE": str(settings.max_chunk_size),
            "HEALTH_PORT": "0",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


INDEXER_ARGV = [sys.executable, "-m", "perpex_cli.main", "indexer"]


def start_indexer(env: dict[str, str], log: Path, *extra: str) -> subprocess.Popen[bytes]:
    """`perpex indexer` as a child process, output appended to `log`."""
    return subprocess.Popen(
        [*INDEXER_ARGV, *extra], cwd=REPO, env=env, stdout=log.open("ab"), stderr=subprocess.STDOUT
    )


async def index_once(settings: IndexerSettings) -> dict[str, Any]:
    """Run the indexer in-process until caught up and drained; returns its status."""
    stop = asyncio.Event()
    async with open_app(settings, lock_wait=30) as app:
        await app.run(stop, until_caught_up=True)
        return app.status()


# ---------------------------------------------------------------- chain side
def chain_logs(rpc_url: str, deployment: Deployment) -> list[dict[str, Any]]:
    rpc = AnvilRpc(rpc_url)
    try:
        topics = sorted(load_event_table())
        c = deployment.contracts
        return rpc.call(
            "eth_getLogs",
            [
                {
                    "address": [c.position_manager, c.position_nft]
                    + ([deployment.governance.governor] if deployment.governance else []),
                    "topics": [topics],
                    "fromBlock": hex(deployment.start_block),
                    "toBlock": "latest",
                }
            ],
        )
    finally:
        rpc.close()


def chain_event_ids(rpc_url: str, deployment: Deployment, chain_id: int = 31337) -> set[str]:
    return {
        f"{chain_id}:{lg['transactionHash'].lower()}:{int(lg['logIndex'], 16)}"
        for lg in chain_logs(rpc_url, deployment)
    }


def chain_state(rpc_url: str, deployment: Deployment) -> dict[str, Any]:
    """Positions (getPosition + positionOwner for every minted token) and markets."""
    w3 = Web3()
    c = deployment.contracts
    pm = w3.eth.contract(address=c.position_manager, abi=load_abi("PositionManager"))
    nft = w3.eth.contract(address=c.position_nft, abi=load_abi("PositionNFT"))
    rpc = AnvilRpc(rpc_url)
    try:

        def call(contract: Any, fn: str, args: list[Any]) -> tuple[str, list[Any]]:
            data = contract.encode_abi(fn, args=args)
            return ("eth_call", [{"to": contract.address, "data": data}, "latest"])

        (minted_raw,) = rpc.batch([call(nft, "totalMinted", [])])
        minted = int(minted_raw, 16)
        calls = []
        for t in range(1, minted + 1):
            calls += [call(pm, "getPosition", [t]), call(pm, "positionOwner", [t])]
        results = rpc.batch(calls) if calls else []
        positions = {}
        for i, t in enumerate(range(1, minted + 1)):
            (pos,) = abi_decode([POSITION_TYPES], bytes.fromhex(results[2 * i][2:]))
            (owner,) = abi_decode(["address"], bytes.fromhex(results[2 * i + 1][2:]))
            positions[t] = {
                "market_id": "0x" + pos[0].hex(),
                "is_long": pos[1],
                "collateral": pos[2],
                "leverage": pos[3],
                "size": pos[4],
                "notional": pos[5],
                "entry_price": pos[6],
                "entry_funding_index": pos[7],
                "opened_timestamp": pos[8],
                "opened_block": pos[9],
                "owner": owner.lower(),
            }
        markets = {}
        head = rpc.call("eth_getBlockByNumber", ["latest", False])
        at, now = head["number"], int(head["timestamp"], 16)
        for pair, m in deployment.markets.items():
            idx, last, speed = rpc.batch(
                [
                    (
                        "eth_call",
                        [call(pm, "cumulativeFundingIndex", [m.market_id_bytes])[1][0], at],
                    ),
                    ("eth_call", [call(pm, "lastFundingTime", [m.market_id_bytes])[1][0], at]),
                    ("eth_call", [call(pm, "fundingPerSecond", [m.market_id_bytes])[1][0], at]),
                ]
            )
            (cum,) = abi_decode(["int256"], bytes.fromhex(idx[2:]))
            (per_second,) = abi_decode(["int256"], bytes.fromhex(speed[2:]))
            markets[m.market_id] = {
                "pair": pair,
                "cumulative_funding_index": cum,  # accrued to `now`
                "funding_per_second": per_second,
                "last_funding_time": int(last, 16),
                "now": now,
            }
        return {"minted": minted, "positions": positions, "markets": markets}
    finally:
        rpc.close()


def funding_at(rpc_url: str, deployment: Deployment, market_id: str, block: int) -> tuple[int, int]:
    """Both sides' cumulative funding indexes at `block` (cumulativeFunding)."""
    pm = Web3().eth.contract(
        address=deployment.contracts.position_manager, abi=load_abi("PositionManager")
    )
    rpc = AnvilRpc(rpc_url)
    try:
        data = pm.encode_abi("cumulativeFunding", args=[bytes.fromhex(market_id[2:])])
        raw = rpc.call("eth_call", [{"to": pm.address, "data": data}, hex(block)])
    finally:
        rpc.close()
    long, short = abi_decode(["int256", "int256"], bytes.fromhex(raw[2:]))
    return int(long), int(short)


# ---------------------------------------------------------------- database side
async def db_rows(dsn: str, query: str, *args: Any) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return await conn.fetch(query, *args)
    finally:
        await conn.close()


async def assert_db_matches_chain(dsn: str, rpc_url: str, deployment: Deployment) -> None:
    chain = chain_state(rpc_url, deployment)
    logs = chain_logs(rpc_url, deployment)
    rows = await db_rows(dsn, "SELECT * FROM positions ORDER BY token_id")
    db = {int(r["token_id"]): r for r in rows}
    assert set(db) == set(range(1, chain["minted"] + 1)), "positions table misses or adds tokens"
    for token, onchain in chain["positions"].items():
        row = db[token]
        if onchain["size"] == 0:
            assert row["status"] in ("closed", "liquidated"), (token, row["status"])
            continue
        assert row["status"] == "open", token
        for key, value in onchain.items():
            got = row[key]
            assert (int(got) if key not in ("market_id", "owner", "is_long") else got) == value, (
                token,
                key,
                got,
                value,
            )
    events = await db_rows(dsn, "SELECT tx_hash, log_index, block_hash FROM events")
    assert len(events) == len(logs)
    assert {(r["tx_hash"], r["log_index"], r["block_hash"]) for r in events} == {
        (lg["transactionHash"].lower(), int(lg["logIndex"], 16), lg["blockHash"].lower())
        for lg in logs
    }
    liq_topic = next(
        s.topic0 for s in load_event_table().values() if s.name == "PositionLiquidated"
    )
    liqs = await db_rows(dsn, "SELECT token_id, remaining_size FROM liquidations")
    assert sorted(int(r["token_id"]) for r in liqs) == sorted(
        int(lg["topics"][1], 16) for lg in logs if lg["topics"][0] == liq_topic
    )
    statuses = await db_rows(dsn, "SELECT status, count(*) AS n FROM positions GROUP BY status")
    counts = {r["status"]: r["n"] for r in statuses}
    # a partial liquidation leaves the position open: one liquidation row per call
    assert counts.get("liquidated", 0) == sum(1 for r in liqs if int(r["remaining_size"]) == 0)
    markets = await db_rows(dsn, "SELECT * FROM markets")
    by_id = {r["market_id"]: r for r in markets}
    for mid, m in chain["markets"].items():
        row = by_id[mid]
        assert row["pair"] == m["pair"]
        assert row["last_funding_time"] == m["last_funding_time"]  # set by addMarket too
        assert int(row["funding_per_second"]) == m["funding_per_second"]
        # the table holds both sides' indexes at the last update (funding accrues every second
        # since, at a pace that depends on the book): the chain's at that update's block
        stored = (int(row["cumulative_funding_index"]), int(row["cumulative_funding_short"]))
        last = await db_rows(
            dsn,
            "SELECT block_number FROM funding_updates WHERE market_id = $1 "
            "ORDER BY block_number DESC, log_index DESC LIMIT 1",
            mid,
        )
        if last:
            assert stored == funding_at(rpc_url, deployment, mid, int(last[0]["block_number"]))
        else:
            assert stored == (0, 0)
    (status,) = await db_rows(dsn, "SELECT count(DISTINCT last_synced_block) AS n FROM sync_status")
    assert status["n"] == 1


# ---------------------------------------------------------------- kafka side
async def consume(
    bootstrap: str, topic: str, until: Any, within: float = 30.0
) -> list[tuple[bytes, EventEnvelope, list[tuple[str, bytes]]]]:
    """Read the topic from the start until `until(messages)` is true (or timeout)."""
    consumer = make_consumer(bootstrap, [topic], group_id=None)
    await consumer.start()
    out: list[tuple[bytes, EventEnvelope, list[tuple[str, bytes]]]] = []
    deadline = time.monotonic() + within
    try:
        while time.monotonic() < deadline and not until(out):
            batch = await consumer.getmany(timeout_ms=300, max_records=5000)
            for records in batch.values():
                for rec in records:
                    out.append((rec.key, decode_event(rec.value), list(rec.headers or ())))
    finally:
        await consumer.stop()
    return out


def ids_of(
    messages: Iterable[tuple[bytes, EventEnvelope, Any]], reverted: bool = False
) -> set[str]:
    return {e.event_id for _, e, _ in messages if e.reverted == reverted}


def dump(obj: Any) -> str:
    return json.dumps(obj, default=str, indent=1)


async def wait_until(predicate: Any, within: float = 30.0, every: float = 0.2) -> Any:
    """Await `predicate()` (sync or async) until it returns a truthy value."""
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {within}s (last: {last!r})")


async def synced_to(dsn: str, block: int) -> bool:
    try:
        rows = await db_rows(dsn, "SELECT min(last_synced_block) AS b FROM sync_status")
    except asyncpg.UndefinedTableError:
        return False
    return rows[0]["b"] is not None and rows[0]["b"] >= block


async def outbox_empty(dsn: str) -> bool:
    rows = await db_rows(dsn, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")
    return rows[0]["n"] == 0


async def matches_chain(dsn: str, rpc_url: str, deployment: Deployment) -> bool:
    try:
        await assert_db_matches_chain(dsn, rpc_url, deployment)
    except AssertionError:
        return False
    return True
