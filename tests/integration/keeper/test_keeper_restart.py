"""`perpex keeper` as a process: killed with a liquidation in flight and restarted, it sends
no duplicate and recovers its nonce; SIGTERM shuts it down gracefully (exit 0, offsets
committed)."""

from __future__ import annotations

import asyncio
import signal
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer, TopicPartition
from deploy_support import Deployed
from keeper_support import (
    BTC,
    ETH,
    KEEPER_KEY,
    KeeperProcess,
    address_of,
    automine_off,
    crash,
    crash_and_mine,
    indexer_settings,
    keeper_env,
    keeper_settings,
    liquidations,
    open_positions,
    rpc,
    running_indexer,
    txs_from,
    wait_indexed,
    wait_until,
)
from web3 import Web3

from perpex_dev.devstack.market import LocalMarket


async def test_killed_mid_flight_restart_sends_no_duplicate_then_sigterm_exits_cleanly(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    market = LocalMarket(chain, deployment)
    book = open_positions(market, [(ETH, True, 18), (BTC, True, 18), (ETH, True, 2)])
    (eth_victim,) = book.tokens(lambda p, _l, lev: p == ETH and lev == 18)
    (btc_victim,) = book.tokens(lambda p, _l, _lev: p == BTC)
    keeper_address = address_of(KEEPER_KEY)
    group = f"g-{uuid.uuid4().hex[:8]}"
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    procs: list[KeeperProcess] = []
    try:
        async with running_indexer(isettings) as indexer:
            await wait_indexed(indexer, chain)
            settings = keeper_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, group)
            env = keeper_env(settings)
            first = await KeeperProcess(env).start()
            procs.append(first)
            await first.wait_for("bootstrapped 3 open positions")
            nonce = chain.eth.get_transaction_count(keeper_address)
            with automine_off(chain):
                start = crash_and_mine(market, ETH, -0.08)
                # the liquidation is broadcast, and stays pending: mining is paused
                await wait_until(
                    lambda: chain.eth.get_transaction_count(keeper_address, "pending") > nonce,
                    within=30,
                )
                await first.kill()  # SIGKILL: no cleanup at all
                second = await KeeperProcess(env).start()
                procs.append(second)
                await second.wait_for("transactions of a previous run are pending")
                await asyncio.sleep(0.5)
                rpc(chain, "evm_mine")  # the first run's transaction is mined now
            await second.wait_for("bootstrapped")
            # the restarted keeper knows the position is gone; liquidate another one to show
            # its nonce is right
            crash(market, BTC, -0.08)
            await wait_until(
                lambda: (
                    btc_victim in {e["tokenId"] for e in liquidations(chain, deployment, start)}
                ),
                within=30,
            )
            await asyncio.sleep(1.0)  # a duplicate, if any, would be sent by now
            assert second.proc is not None
            second.proc.send_signal(signal.SIGTERM)
            code = await second.wait_exit(30)
    finally:
        for p in procs:
            await p.kill()
    assert code == 0, "\n".join(second.lines[-30:])
    assert second.saw("keeper stopped")
    events = liquidations(chain, deployment, start)
    assert sorted(e["tokenId"] for e in events) == sorted([eth_victim, btc_victim])
    sent = txs_from(chain, keeper_address, start)
    assert len(sent) == 2 and all(t["status"] == 1 for t in sent)  # no duplicate, no revert
    assert sorted(t["tx"]["nonce"] for t in sent) == [nonce, nonce + 1]

    # offsets were committed for the group
    consumer = AIOKafkaConsumer(bootstrap_servers=kafka_bootstrap, group_id=group)
    await consumer.start()
    try:
        committed = [await consumer.committed(TopicPartition(topic, p)) for p in range(3)]
    finally:
        await consumer.stop()
    assert all(c is not None for c in committed), committed
