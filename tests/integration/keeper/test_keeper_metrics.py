"""`perpex keeper` as a process, scraped on its HEALTH_PORT (/metrics, read with Prometheus' own
text parser): the book it watches, the liquidatable positions, a liquidation held in the
mempool long enough to be replaced, its latency in blocks, the wallet's balance and nonce gap."""

from __future__ import annotations

import signal
import uuid
from pathlib import Path

from keeper_support import (
    BTC,
    ETH,
    KeeperProcess,
    automine_off,
    crash_and_mine,
    deploy,
    indexer_settings,
    keeper_env,
    keeper_settings,
    liquidations,
    open_positions,
    rpc,
    running_indexer,
    wait_indexed,
)
from metrics_scrape import Scrape, scrape_until
from web3 import Web3

from perpex_dev.devstack.market import LocalMarket
from perpex_dev.devstack.ports import free_port

NAMED = (
    "perpex_keeper_book_positions",
    "perpex_keeper_liquidatable_positions",
    "perpex_keeper_pending_transactions",
    "perpex_keeper_wallet_balance_eth",
    "perpex_keeper_nonce_gap",
    "perpex_keeper_sender_stuck",
    "perpex_keeper_tx_sent",
    "perpex_keeper_tx_replaced",
    "perpex_keeper_tx_reverted",
    "perpex_keeper_tx_confirmed",
    "perpex_service_ready",
    "perpex_service_alive",
    "perpex_service_dependency_up",
)


async def test_metrics_from_the_running_keeper(
    chain: Web3, rpc_url: str, fresh_db: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    deployment, dep_file = deploy(rpc_url, tmp_path)
    market = LocalMarket(chain, deployment)
    book = open_positions(market, [(ETH, True, 18), (BTC, True, 18), (ETH, True, 2)])
    (victim,) = book.tokens(lambda p, _l, lev: p == ETH and lev == 18)
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    port = free_port()
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        settings = keeper_settings(
            rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, f"g-{uuid.uuid4().hex[:8]}"
        )
        proc = await KeeperProcess(keeper_env(settings, HEALTH_PORT=str(port))).start()
        try:
            await proc.wait_for("bootstrapped 3 open positions")

            def watching(m: Scrape) -> bool:
                assert proc.proc is not None and proc.proc.returncode is None
                return (
                    m.value("perpex_keeper_book_positions") == 3
                    and m.value("perpex_service_ready") == 1
                    and bool(m.samples("perpex_keeper_wallet_balance_eth"))
                )

            m = await scrape_until(port, watching, within=60, what="the book read, ready")
            m.has(*NAMED)
            assert m.value("perpex_keeper_wallet_balance_eth") > 1
            assert m.value("perpex_keeper_liquidatable_positions") == 0
            assert m.value("perpex_keeper_nonce_gap") == 0
            assert m.value("perpex_keeper_tx_sent_total") == 0
            assert m.value("perpex_keeper_tx_replaced_total") == 0
            assert m.value("perpex_service_alive") == 1
            deps = {s.labels["dependency"] for s in m.samples("perpex_service_dependency_up")}
            assert {"RPC", "PostgreSQL", "broker"} <= deps, deps

            # mining paused: the liquidation waits in the mempool and is replaced
            with automine_off(chain):
                crashed = crash_and_mine(market, ETH, -0.08)

                def in_flight(m: Scrape) -> bool:
                    return (
                        m.value("perpex_keeper_tx_sent_total") == 1
                        and m.value("perpex_keeper_liquidatable_positions") == 1
                        and m.value("perpex_keeper_pending_transactions") == 1
                    )

                await scrape_until(port, in_flight, within=30, what="a liquidation in flight")
                await scrape_until(
                    port,
                    lambda m: m.value("perpex_keeper_tx_replaced_total") >= 1,
                    within=30,
                    what="a replacement",
                )
                rpc(chain, "evm_mine")
            mined = crashed + 1

            def settled(m: Scrape) -> bool:
                return (
                    m.value("perpex_keeper_liquidation_latency_blocks_count") == 1
                    and m.value("perpex_keeper_book_positions") == 2
                )

            m = await scrape_until(port, settled, within=30, what="the liquidation counted")
            assert [e["tokenId"] for e in liquidations(chain, deployment, crashed)] == [victim]
            assert chain.eth.get_block(mined)["number"] == mined
            # read liquidatable in the crash's block, mined in the next one: 1 block
            assert m.value("perpex_keeper_liquidation_latency_blocks_sum") == 1
            assert m.value("perpex_keeper_liquidation_latency_blocks_bucket", le="0.0") == 0
            assert m.value("perpex_keeper_liquidation_latency_blocks_bucket", le="1.0") == 1
            assert m.value("perpex_keeper_liquidatable_positions") == 0
            assert m.value("perpex_keeper_pending_transactions") == 0
            replaced = m.value("perpex_keeper_tx_replaced_total")
            assert m.value("perpex_keeper_tx_sent_total") == 1 + replaced  # every version
            assert m.value("perpex_keeper_liquidations_sent_total") == 1
            assert m.value("perpex_keeper_tx_confirmed_total") == 1
            assert m.value("perpex_keeper_tx_reverted_total") == 0
            assert m.value("perpex_keeper_nonce_gap") == 0
            assert m.value("perpex_keeper_liquidations_confirmed_total") == 1
            assert proc.proc is not None
            proc.proc.send_signal(signal.SIGTERM)
            assert await proc.wait_exit(30) == 0, "\n".join(proc.lines[-30:])
        finally:
            await proc.kill()
