"""anvil_reorg under a running indexer: the database ends equal to the canonical chain and a
compensating (reverted) event is published for every event that left it."""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from deploy_support import Deployed
from indexer_support import (
    assert_db_matches_chain,
    consume,
    db_rows,
    ids_of,
    matches_chain,
    outbox_empty,
    settings_for,
    synced_to,
    wait_until,
)
from web3 import Web3

from perpex_dev.loadgen import LoadGen
from services.indexer.app import open_app


async def test_reorg_rolls_back_and_publishes_reverted_events(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    gen = LoadGen(rpc_url, deployment, seed=5, batch_size=30)
    gen.fund_traders()
    gen.scenario(60)
    topic = "perpex.events.reorg." + dep_file.stem
    settings = settings_for(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, reorg_window=16)

    stop = asyncio.Event()
    async with open_app(settings) as app:
        task = asyncio.create_task(app.run(stop))
        try:
            await wait_until(lambda: synced_to(fresh_db, gen.block_number()))
            # activity in the last blocks: opens, margin, funding, closes (one tx per block)
            gen.batch_size = 1
            tokens = gen.open_positions(2)
            gen.update_funding(["ETH/USDT"])
            gen.change_margin(tokens[:1])
            gen.close_positions(sorted(gen.open_tokens)[:1])
            head = gen.block_number()
            await wait_until(lambda: synced_to(fresh_db, head))
            await wait_until(lambda: outbox_empty(fresh_db))
            depth = 4
            before = await db_rows(
                fresh_db,
                "SELECT chain_id, tx_hash, log_index FROM events WHERE block_number > $1",
                head - depth,
            )
            removed = {f"{r['chain_id']}:{r['tx_hash']}:{r['log_index']}" for r in before}
            assert removed, "the reorged blocks must hold indexed events"

            chain.provider.make_request("anvil_reorg", [depth, []])  # type: ignore[arg-type]
            gen.rpc.call("evm_mine")  # the new branch becomes longer than the old one
            await wait_until(lambda: matches_chain(fresh_db, rpc_url, deployment), within=30)
            await wait_until(lambda: outbox_empty(fresh_db))
            assert app.indexer.stats.reorgs >= 1
            assert app.indexer.stats.reverted_events == len(removed)
        finally:
            stop.set()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(task, 20)
    gen.close()
    await assert_db_matches_chain(fresh_db, rpc_url, deployment)
    left = await db_rows(
        fresh_db, "SELECT count(*) AS n FROM block_hashes WHERE block_number > $1", head
    )
    assert left[0]["n"] <= 1

    msgs = await consume(kafka_bootstrap, topic, lambda m: ids_of(m, reverted=True) >= removed)
    assert ids_of(msgs, reverted=True) == removed
    # compensating events come after the originals, newest first within one position
    order = [(e.event_id, e.reverted) for _, e, _ in msgs]
    for eid in removed:
        assert order.index((eid, False)) < order.index((eid, True))
