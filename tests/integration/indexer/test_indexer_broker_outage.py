"""A broker outage never stops indexing and never loses an event: with a private broker stopped,
the indexer keeps committing chunks (the outbox grows); once the broker is back the outbox
drains and every queued event arrives."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path

from deploy_support import Deployed
from indexer_support import (
    consume,
    db_rows,
    ids_of,
    outbox_empty,
    settings_for,
    start_indexer,
    subprocess_env,
    synced_to,
    wait_until,
)
from web3 import Web3

from perpex_dev.devstack.components import Broker, StackConfig
from perpex_dev.devstack.ports import free_port
from perpex_dev.loadgen import LoadGen


async def test_broker_stopped_then_restarted(
    chain: Web3, deployed: Deployed, rpc_url: str, fresh_db: str, tmp_path: Path
) -> None:
    broker = Broker(StackConfig(data_dir=tmp_path / "broker", kafka_port=free_port()))
    await asyncio.to_thread(broker.start)
    try:
        await _run_outage(broker, chain, deployed, rpc_url, fresh_db, tmp_path)
    finally:
        await asyncio.to_thread(broker.stop)
    assert "outbox: send failed" in (tmp_path / "indexer.log").read_text()


async def _run_outage(
    broker: Broker, chain: Web3, deployed: Deployed, rpc_url: str, fresh_db: str, tmp_path: Path
) -> None:
    deployment, dep_file = deployed
    gen = LoadGen(rpc_url, deployment, seed=9, batch_size=20)
    gen.fund_traders()
    gen.scenario(30)
    topic = "perpex.events"
    settings = settings_for(rpc_url, fresh_db, broker.url, topic, dep_file)
    log = tmp_path / "indexer.log"
    proc = start_indexer(subprocess_env(settings), log)
    try:
        await wait_until(lambda: synced_to(fresh_db, gen.block_number()), within=60)
        await wait_until(lambda: outbox_empty(fresh_db), within=30)
        phase1_head = gen.block_number()

        await asyncio.to_thread(broker.stop)
        tokens = gen.open_positions(25)
        gen.close_positions(tokens[:5])
        head = gen.block_number()
        # indexing goes on without the broker
        await wait_until(lambda: synced_to(fresh_db, head), within=30)
        pending = await db_rows(
            fresh_db,
            "SELECT coalesce(sum(message_count), 0) AS n FROM outbox WHERE sent_at IS NULL",
        )
        assert pending[0]["n"] >= 1
        queued = await db_rows(
            fresh_db,
            "SELECT chain_id, tx_hash, log_index FROM events WHERE block_number > $1",
            phase1_head,
        )
        expected = {f"{r['chain_id']}:{r['tx_hash']}:{r['log_index']}" for r in queued}
        assert len(expected) == pending[0]["n"]
        await asyncio.sleep(1.0)  # a few failed drain attempts while it is down

        await asyncio.to_thread(broker.start)  # a new, empty in-memory broker on the same port
        await wait_until(lambda: outbox_empty(fresh_db), within=60)
        msgs = await consume(broker.url, topic, lambda m: ids_of(m) >= expected)
        assert ids_of(msgs) >= expected
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=20) == 0, log.read_text()[-3000:]
    finally:
        if proc.poll() is None:
            proc.kill()
        gen.close()
