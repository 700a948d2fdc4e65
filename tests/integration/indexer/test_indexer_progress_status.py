"""A backfill logs its progress; `perpex indexer status` reports head, indexed block, lag, the
outbox backlog and each contract's sync status against real anvil, PostgreSQL and broker, and
names what it cannot reach."""

from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import asyncpg
import pytest
from deploy_support import Deployed
from indexer_support import INDEXER_ARGV, REPO, index_once, settings_for, subprocess_env
from web3 import Web3

from perpex_dev.devstack.ports import free_port
from perpex_dev.loadgen import LoadGen


def _status(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*INDEXER_ARGV, "status", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


async def test_backfill_progress_and_status(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    deployment, dep_file = deployed
    gen = LoadGen(rpc_url, deployment, seed=5, batch_size=10)
    gen.fund_traders()
    gen.open_positions(20)
    gen.rpc.call("anvil_mine", [hex(400)])
    gen.open_positions(20)
    gen.close()
    settings = settings_for(
        rpc_url,
        fresh_db,
        kafka_bootstrap,
        "perpex.events.progress." + dep_file.stem,
        dep_file,
        progress_log_s=0.001,
    )
    with caplog.at_level(logging.INFO, logger="services.indexer.sync"):
        status = await index_once(settings)
    lines = [r.getMessage() for r in caplog.records if r.name == "services.indexer.sync"]
    progress = [line for line in lines if line.startswith("backfill: ")]
    assert progress, lines
    assert "blocks (" in progress[0] and "events/s" in progress[0] and "ETA " in progress[0]
    done = [line for line in lines if line.startswith("backfill done: ")]
    assert len(done) == 1 and f"{status['events']:,} events" in done[0], done

    head = chain.eth.block_number
    env = subprocess_env(settings)
    table = _status(env)
    assert table.returncode == 0, table.stderr
    out = table.stdout
    assert f"head            {head:,}" in out and f"indexed block   {head:,}" in out
    assert "lag             0 blocks" in out
    assert "outbox backlog  0 messages in 0 rows" in out
    assert "PositionManager" in out and "PositionNFT" in out
    assert deployment.contracts.position_manager.lower() in out

    chain.provider.make_request("anvil_mine", [hex(5)])  # type: ignore[arg-type]
    conn = await asyncpg.connect(fresh_db)
    try:  # a message the broker has not acknowledged yet
        await conn.execute(
            "INSERT INTO outbox (event_ids, msg_keys, msg_values, message_count, created_at) "
            "VALUES ('{a,b}', '{x,y}', '{x,y}', 2, now() - interval '90 seconds')"
        )
    finally:
        await conn.close()
    as_json = _status(env, "--json")
    assert as_json.returncode == 0, as_json.stderr
    report = json.loads(as_json.stdout)
    assert report["head"] == head + 5 and report["indexed_block"] == head
    assert report["lag_blocks"] == 5 and report["errors"] == {}
    assert report["outbox"]["messages"] == 2 and report["outbox"]["rows"] == 1
    assert 89 < report["outbox"]["oldest_age_s"] < 300
    names = {c["name"] for c in report["contracts"]}
    governed = {"PerpExGovernor"} if deployment.governance is not None else set()
    assert names == {"PositionManager", "PositionNFT"} | governed
    assert all(c["last_synced_block"] == head for c in report["contracts"])

    # PostgreSQL unreachable: said so (password masked), the head still shown, exit 1
    dead_db = f"postgresql://perpex:s3cret@127.0.0.1:{free_port()}/perpex"
    no_db = _status({**env, "DB_URI": dead_db})
    assert no_db.returncode == 1
    assert "cannot reach PostgreSQL at postgresql://perpex:***@127.0.0.1:" in no_db.stderr
    assert "s3cret" not in no_db.stderr + no_db.stdout
    assert f"head            {head + 5:,}" in no_db.stdout
    # the node unreachable: said so (the URL's path masked), the database part still shown
    no_rpc = _status({**env, "RPC_URL": f"http://127.0.0.1:{free_port()}/v2/apikey"}, "--json")
    assert no_rpc.returncode == 1
    assert "cannot reach the node at http://127.0.0.1:" in no_rpc.stderr
    assert "apikey" not in no_rpc.stderr + no_rpc.stdout
    partial = json.loads(no_rpc.stdout)
    assert partial["head"] is None and partial["indexed_block"] == head
    assert set(partial["errors"]) == {"rpc"}
    # a database the indexer never ran against
    admin = await asyncpg.connect(fresh_db)
    try:
        await admin.execute("CREATE DATABASE empty_for_status")
    finally:
        await admin.close()
    try:
        empty = _status({**env, "DB_URI": fresh_db.rsplit("/", 1)[0] + "/empty_for_status"})
        assert empty.returncode == 1 and "has no indexer tables" in empty.stderr
    finally:
        admin = await asyncpg.connect(fresh_db)
        try:
            await admin.execute("DROP DATABASE empty_for_status")
        finally:
            await admin.close()
