"""Execution under stress: a stuck liquidation is replaced with a higher fee and mined once;
RPC errors are backed off and then succeed; a low balance warns and a balance that cannot pay
for gas sends nothing."""

from __future__ import annotations

import asyncio
import logging
import uuid
from pathlib import Path

import pytest
from deploy_support import Deployed
from keeper_support import (
    ETH,
    KEEPER_KEY,
    address_of,
    automine_off,
    crash,
    crash_and_mine,
    indexer_settings,
    keeper_settings,
    liquidations,
    open_positions,
    rpc,
    running_indexer,
    running_keeper,
    txs_from,
    wait_indexed,
    wait_ready,
    wait_until,
)
from web3 import Web3

from perpex_dev.devstack.fault_proxy import FaultProxy
from perpex_dev.devstack.market import LocalMarket


def _group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


async def test_stuck_liquidation_is_replaced_and_mined_once(
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
    book = open_positions(market, [(ETH, True, 18), (ETH, True, 2)])
    (victim,) = book.tokens(lambda _p, _l, lev: lev == 18)
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        settings = keeper_settings(
            rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, _group(), replace_after_s=0.5
        )
        async with running_keeper(settings) as keeper:
            await wait_ready(keeper)
            sender = keeper.sender
            with automine_off(chain):
                start = crash_and_mine(market, ETH, -0.08)
                await wait_until(lambda: sender.pending, within=15)
                pending = next(iter(sender.pending.values()))
                first_fee = pending.fees.max_fee_per_gas
                # Mining stalls and the base fee jumps far above what the first send offered.
                rpc(chain, "anvil_setNextBlockBaseFeePerGas", [hex(first_fee * 4)])
                await wait_until(lambda: len(pending.hashes) >= 3, within=15)
                assert sender.stats.replaced >= 2
                rpc(chain, "evm_mine")
                await wait_until(lambda: victim in keeper.liquidated, within=15)
            assert keeper.executor.stats["confirmed"] == 1
    keeper_address = address_of(KEEPER_KEY)
    sent = txs_from(chain, keeper_address, start)
    assert len(sent) == 1 and sent[0]["status"] == 1  # one transaction for that nonce
    assert sent[0]["tx"]["maxFeePerGas"] > first_fee * 4
    assert sent[0]["tx"]["hash"].to_0x_hex() != pending.hashes[0]
    assert [e["tokenId"] for e in liquidations(chain, deployment, start)] == [victim]


async def test_rpc_errors_back_off_then_succeed(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    deployment, dep_file = deployed
    market = LocalMarket(chain, deployment)
    book = open_positions(market, [(ETH, True, 18), (ETH, True, 17), (ETH, True, 2)])
    underwater = book.tokens(lambda _p, _l, lev: lev > 10)
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with FaultProxy(rpc_url) as proxy, running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        settings = keeper_settings(
            proxy.url,
            fresh_db,
            kafka_bootstrap,
            topic,
            dep_file,
            _group(),
            max_retries=6,
        )
        async with running_keeper(settings) as keeper:
            await wait_ready(keeper)
            start = chain.eth.block_number
            # The node goes away for 2 s, during which the price crashes.
            proxy.down = True
            before = sum(proxy.seen.values())
            crash(market, ETH, -0.08)
            await asyncio.sleep(2.0)
            during = sum(proxy.seen.values()) - before
            assert not keeper.health.ready
            # backing off: ~20 polls would be made in 2 s at POLL_INTERVAL_MS=100
            assert 2 <= during <= 10, during
            # broadcasts fail twice more after the node is back: the sender retries
            proxy.fail_next["eth_sendRawTransaction"] = 2
            proxy.down = False
            await wait_until(lambda: underwater <= set(keeper.liquidated), within=30)
            await wait_until(lambda: keeper.health.ready, within=10)
            assert proxy.failed["eth_sendRawTransaction"] == 2
    assert any("chain read failed" in r.getMessage() for r in caplog.records)
    assert any("chain reads recovered" in r.getMessage() for r in caplog.records)
    sent = txs_from(chain, address_of(KEEPER_KEY), start)
    assert len(sent) == len(underwater) and all(t["status"] == 1 for t in sent)
    nonces = sorted(t["tx"]["nonce"] for t in sent)
    assert nonces == list(range(nonces[0], nonces[0] + len(sent)))  # no gap, no reuse


async def test_low_balance_warns_and_no_send_without_gas_money(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    deployment, dep_file = deployed
    market = LocalMarket(chain, deployment)
    book = open_positions(market, [(ETH, True, 18)])
    (victim,) = book.positions
    keeper_address = address_of(KEEPER_KEY)
    rpc(chain, "anvil_setBalance", [keeper_address, hex(10**15)])  # 0.001 ETH
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        settings = keeper_settings(
            rpc_url,
            fresh_db,
            kafka_bootstrap,
            topic,
            dep_file,
            _group(),
            keeper_min_balance_eth=0.5,
        )
        async with running_keeper(settings) as keeper:
            await wait_ready(keeper)
            assert keeper.low_balance_warnings >= 1
            assert any("balance low" in r.getMessage() for r in caplog.records)
            # Not even gas for one liquidation: nothing is sent.
            rpc(chain, "anvil_setBalance", [keeper_address, hex(1_000)])
            nonce = chain.eth.get_transaction_count(keeper_address)
            start = chain.eth.block_number
            crash(market, ETH, -0.08)
            await wait_until(
                lambda: keeper.executor.stats["retry"] >= 1 and not keeper.executor.jobs, within=15
            )
            await asyncio.sleep(0.5)
            assert chain.eth.get_transaction_count(keeper_address, "pending") == nonce
            assert any("not sending liquidations" in r.getMessage() for r in caplog.records)
            # Topped up: the next block's round liquidates it.
            rpc(chain, "anvil_setBalance", [keeper_address, hex(10**19)])
            await asyncio.sleep(1.1)  # the sender's balance cache
            rpc(chain, "evm_mine")
            await wait_until(lambda: victim in keeper.liquidated, within=15)
    assert [e["tokenId"] for e in liquidations(chain, deployment, start)] == [victim]
