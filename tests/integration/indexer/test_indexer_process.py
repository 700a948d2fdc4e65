"""`perpex indexer` as a process: SIGTERM finishes the chunk and exits 0; kill -9 mid-sync and a
restart leave no gap and no duplicate; bad configuration exits 2; /metrics on its HEALTH_PORT
tells how far behind it is, how many events it indexed, the outbox backlog and the reorgs."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
from pathlib import Path

import asyncpg
from deploy_support import Deployed
from indexer_support import (
    INDEXER_ARGV,
    assert_db_matches_chain,
    chain_event_ids,
    consume,
    db_rows,
    ids_of,
    matches_chain,
    settings_for,
    start_indexer,
    subprocess_env,
    synced_to,
    wait_until,
)
from metrics_scrape import Scrape, scrape_until
from web3 import Web3

from perpex_dev.devstack.ports import free_port
from perpex_dev.loadgen import LoadGen
from services.indexer.store import WRITER_LOCK_KEY


async def test_sigterm_then_kill9_then_restart(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    gen = LoadGen(rpc_url, deployment, seed=3, batch_size=2)
    gen.fund_traders()
    gen.scenario(90)
    gen.rpc.call("anvil_mine", [hex(120)])
    gen.batch_size = 3
    gen.open_positions(30)
    head = gen.block_number()
    gen.close()
    expected = chain_event_ids(rpc_url, deployment)
    topic = "perpex.events.proc." + dep_file.stem
    settings = settings_for(
        rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, chunk_size=1, max_chunk_size=1
    )
    env = subprocess_env(settings)
    log = tmp_path / "indexer.log"

    # 1. SIGTERM mid-sync: the current chunk finishes, exit status 0
    proc = start_indexer(env, log)
    try:
        await wait_until(
            lambda: synced_to(fresh_db, deployment.start_block + 20), within=60, every=0.05
        )
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    (after_term,) = await db_rows(fresh_db, "SELECT min(last_synced_block) AS b FROM sync_status")
    assert after_term["b"] < head, "SIGTERM should have stopped the sync before the end"

    # 2. kill -9 mid-sync
    proc = start_indexer(env, log)
    try:
        await wait_until(lambda: synced_to(fresh_db, after_term["b"] + 20), within=60, every=0.05)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
    (after_kill,) = await db_rows(fresh_db, "SELECT min(last_synced_block) AS b FROM sync_status")
    assert after_kill["b"] < head
    # what is committed is exactly the chain's events up to that block: no gap, no duplicate
    rows = await db_rows(fresh_db, "SELECT chain_id, tx_hash, log_index, block_number FROM events")
    assert all(r["block_number"] <= after_kill["b"] for r in rows)

    # 3. restart and run until caught up
    fast = subprocess_env(settings.model_copy(update={"max_chunk_size": 2000}))
    proc = start_indexer(fast, log, "--until-caught-up")
    assert proc.wait(timeout=120) == 0, log.read_text()[-3000:]
    await assert_db_matches_chain(fresh_db, rpc_url, deployment)
    rows = await db_rows(fresh_db, "SELECT chain_id, tx_hash, log_index FROM events")
    assert {f"{r['chain_id']}:{r['tx_hash']}:{r['log_index']}" for r in rows} == expected
    assert len(rows) == len(expected)
    msgs = await consume(kafka_bootstrap, topic, lambda m: ids_of(m) >= expected)
    assert ids_of(msgs) == expected  # at least once; duplicates allowed, none missing


async def test_a_standby_exits_0_on_sigterm(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    """A second indexer waits for the writer lock; told to stop, it stops waiting."""
    _, dep_file = deployed
    settings = settings_for(rpc_url, fresh_db, kafka_bootstrap, "perpex.events.standby", dep_file)
    log = tmp_path / "standby.log"
    holder = await asyncpg.connect(fresh_db)
    try:
        await holder.execute("SELECT pg_advisory_lock($1)", WRITER_LOCK_KEY)
        proc = start_indexer(subprocess_env(settings), log)
        try:
            await wait_until(lambda: "waiting (standby)" in log.read_text(), within=60)
            proc.send_signal(signal.SIGTERM)
            assert proc.wait(timeout=10) == 0, log.read_text()[-3000:]
        finally:
            if proc.poll() is None:
                proc.kill()
        assert await holder.fetchval("SELECT count(*) FROM sync_status") == 0
    finally:
        await holder.close()


async def test_missing_configuration_exits_2(tmp_path: Path) -> None:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DEPLOYMENT_FILE", "POSITION_MANAGER_ADDRESS")
    }
    env["RPC_URL"] = "http://127.0.0.1:1"
    proc = await asyncio.create_subprocess_exec(
        *INDEXER_ARGV, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    _, err = await proc.communicate()
    assert proc.returncode == 2
    assert b"DEPLOYMENT_FILE" in err


async def test_other_contracts_on_an_indexed_database_exit_2_naming_them(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    """The database follows other contracts: their history is not here, and resuming would
    skip it or index blocks twice. Exit 2 with the reason."""
    _, dep_file = deployed
    settings = settings_for(rpc_url, fresh_db, kafka_bootstrap, "perpex.events.other", dep_file)
    log = tmp_path / "first.log"
    first = start_indexer(subprocess_env(settings), log, "--until-caught-up")
    assert first.wait(timeout=120) == 0, log.read_text()[-3000:]
    other = subprocess_env(settings, POSITION_NFT_ADDRESS="0x" + "42" * 20)
    second_log = tmp_path / "second.log"
    second = start_indexer(other, second_log)
    assert second.wait(timeout=120) == 2, second_log.read_text()[-3000:]
    text = second_log.read_text()
    assert "POSITION_NFT_ADDRESS" in text and "fresh database" in text


async def test_metrics_from_the_running_indexer(
    chain: Web3,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
    deployed: Deployed,
) -> None:
    """Scraped from the process: caught up means 0 blocks behind, every chain event counted,
    the outbox empty; a reorg under it is counted with its depth."""
    deployment, dep_file = deployed
    gen = LoadGen(rpc_url, deployment, seed=7, batch_size=10)
    gen.fund_traders()
    gen.scenario(20)
    topic = "perpex.events.metrics." + dep_file.stem
    settings = settings_for(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    port = free_port()
    log = tmp_path / "indexer.log"
    proc = start_indexer(subprocess_env(settings, HEALTH_PORT=str(port)), log)
    try:
        expected = chain_event_ids(rpc_url, deployment)
        head = gen.block_number()

        def caught_up(m: Scrape) -> bool:
            assert proc.poll() is None, log.read_text()[-3000:]
            return (
                m.value("perpex_indexer_last_block") >= head
                and m.value("perpex_indexer_outbox_backlog") == 0
                and m.value("perpex_service_ready") == 1
            )

        m = await scrape_until(port, caught_up, within=90, what="caught up and drained")
        m.has(
            "perpex_indexer_blocks_behind",
            "perpex_indexer_lag_blocks",
            "perpex_indexer_head_block",
            "perpex_indexer_events",
            "perpex_indexer_events_per_second",
            "perpex_indexer_chunk_size_blocks",
            "perpex_indexer_reorgs",
            "perpex_indexer_outbox_backlog",
            "perpex_indexer_outbox_oldest_unsent_age_seconds",
            "perpex_indexer_outbox_sent",
            "perpex_service_alive",
            "perpex_service_dependency_up",
        )
        assert m.value("perpex_indexer_blocks_behind") == 0
        assert m.value("perpex_indexer_head_block") >= head
        assert m.value("perpex_indexer_events_total") == len(expected)
        assert m.value("perpex_indexer_outbox_sent_total") >= len(expected)
        assert m.value("perpex_indexer_outbox_oldest_unsent_age_seconds") == 0
        assert m.value("perpex_indexer_chunk_size_blocks") >= 1
        assert m.value("perpex_indexer_reorgs_total") == 0
        assert m.value("perpex_service_alive") == 1
        deps = {s.labels["dependency"]: s.value for s in m.samples("perpex_service_dependency_up")}
        assert deps == {"RPC": 1, "PostgreSQL": 1, "broker": 1}
        assert "perpex_indexer_reorg_depth_blocks" not in m.families  # none yet

        # a reorg of the last 4 blocks, each holding events
        gen.batch_size = 1
        gen.open_positions(4)
        head = gen.block_number()
        await scrape_until(port, lambda m: m.value("perpex_indexer_last_block") >= head)
        chain.provider.make_request("anvil_reorg", [4, []])  # type: ignore[arg-type]
        gen.rpc.call("evm_mine")  # the new branch becomes the longer one

        def reorged(m: Scrape) -> bool:
            return m.value("perpex_indexer_reorgs_total") >= 1

        m = await scrape_until(port, reorged, within=30, what="the reorg counted")
        assert m.value("perpex_indexer_reorgs_total") == 1
        assert m.value("perpex_indexer_reorg_depth_blocks_count") == 1
        assert m.value("perpex_indexer_reorg_depth_blocks_bucket", le="3.0") == 0
        assert m.value("perpex_indexer_reorg_depth_blocks_bucket", le="5.0") == 1
        await wait_until(lambda: matches_chain(fresh_db, rpc_url, deployment), within=30)
        m = await scrape_until(port, lambda m: m.value("perpex_indexer_blocks_behind") == 0)
        assert m.value("perpex_indexer_events_total") > len(expected)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-3000:]
    finally:
        gen.close()
        if proc.poll() is None:
            proc.kill()
