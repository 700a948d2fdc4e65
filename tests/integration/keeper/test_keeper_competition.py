"""The keeper among competitors, on real anvil, PostgreSQL and broker:

- another liquidator's transactions waiting in the mempool: the keeper's pending-block
  simulation sees them and drops those positions without sending anything (lost races,
  counted), and liquidates the others;
- a competitor's liquidation mined ahead of ours in the same block: ours reverts and is
  counted as a lost race (the keeper reads who liquidated the position), and the keeper's send
  window (window.py) narrows to one liquidation at a time;
- unprofitable liquidations (gas priced far above the reward) are skipped and nothing is sent;
  with the native price taken from the ETH/USDT market they are sent, and the rewards the
  pending-block simulations returned are exactly what the contract paid;
- KEEPER_NATIVE_PRICE_MARKET naming no market stops the keeper with a ConfigError naming it.

The health loop is held on one block (its block-number read answers the old head) while the
test arranges the mempool: the chain, the pool and the simulations are real; only when the
keeper looks is controlled."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from keeper_support import (
    ETH,
    KEEPER_KEY,
    address_of,
    automine_off,
    crash,
    crash_and_mine,
    deploy,
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
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from web3 import Web3

from perpex_dev.devstack.market import LocalMarket
from services.keeper.app import Keeper
from services.keeper.presend import Go
from shared.config import ConfigError
from shared.telemetry import setup_telemetry

pytestmark = pytest.mark.serial  # timing-sensitive: run alone (scripts/test.sh)

COMPETITOR = 5  # an unlocked anvil account that liquidates too
GWEI = 10**9


@pytest.fixture
def reader() -> Iterator[InMemoryMetricReader]:
    metrics = InMemoryMetricReader()
    setup_telemetry("perpex-keeper-test", metric_readers=[metrics], force=True)
    yield metrics


def _points(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    data = reader.get_metrics_data()
    out: dict[tuple[tuple[str, Any], ...], float] = {}
    for rm in data.resource_metrics if data else []:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == name:
                    for p in m.data.data_points:
                        out[tuple(sorted((p.attributes or {}).items()))] = p.value  # type: ignore[union-attr]
    return out


def _hold(keeper: Keeper) -> list[int]:
    """While the returned list holds a block number, the keeper's health loop sees that block
    as the head (no new round starts)."""
    real = keeper.chain.block_number
    held: list[int] = []

    async def block_number() -> int:
        head = await real()
        return held[0] if held else head

    keeper.chain.block_number = block_number  # type: ignore[method-assign]
    return held


def _liquidate_as(market: LocalMarket, who: str, token: int, tip: int = GWEI) -> str:
    tx = market.pm.functions.liquidatePosition(token).transact(
        {"from": who, "gas": 600_000, "maxFeePerGas": 100 * GWEI, "maxPriorityFeePerGas": tip}
    )
    return tx.to_0x_hex()


def _pool_from(w3: Web3, address: str) -> list[dict[str, Any]]:
    content = rpc(w3, "txpool_content")
    return [
        tx
        for section in ("pending", "queued")
        for a, txs in (content.get(section) or {}).items()
        if a.lower() == address.lower()
        for tx in txs.values()
    ]


def _group() -> str:
    return f"g-{uuid.uuid4().hex[:8]}"


async def test_competitors_in_the_mempool_are_seen_and_cost_no_gas(
    chain: Web3,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
    reader: InMemoryMetricReader,
) -> None:
    deployment, dep_file = deploy(rpc_url, tmp_path)
    market = LocalMarket(chain, deployment)
    book = open_positions(market, [(ETH, True, 15 + i) for i in range(6)] + [(ETH, True, 2)])
    under = sorted(book.tokens(lambda _p, _l, lev: lev >= 15))
    taken, left = set(under[:3]), set(under[3:])
    competitor = chain.eth.accounts[COMPETITOR]
    me = address_of(KEEPER_KEY)
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        settings = keeper_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, _group())
        async with running_keeper(settings) as keeper:
            await wait_ready(keeper)
            held = _hold(keeper)
            held.append(chain.eth.block_number)
            nonce = chain.eth.get_transaction_count(me)
            with automine_off(chain):
                start = crash_and_mine(market, ETH, -0.08)  # mined alone: P
                for token in sorted(taken):  # the competitor's, waiting for the next block
                    _liquidate_as(market, competitor, token)
                assert len(_pool_from(chain, competitor)) == 3
                held.clear()  # the keeper sees P: six liquidatable positions
                # tracked in the ledger first, then broadcast: wait for the node to hold them
                await wait_until(
                    lambda: (
                        keeper.executor.stats["lost_races"] == 3
                        and len(keeper.sender.pending) == 3
                        and len(_pool_from(chain, me)) == 3
                    ),
                    within=20,
                )
                ours = _pool_from(chain, me)
                sent_for = {int(tx["input"][10:], 16) for tx in ours}
                assert sent_for == left  # nothing sent for the three the competitor took
                assert keeper.pending_sim.batching and keeper.pending_sim.calls >= 1
                rpc(chain, "evm_mine")
                await wait_until(lambda: left <= set(keeper.liquidated), within=20)
            assert keeper.executor.stats["dropped"] == 3
            assert keeper.executor.stats["mined_reverted"] == 0
    events = liquidations(chain, deployment, start)
    by = {e["tokenId"]: e["liquidator"] for e in events}
    assert sorted(by) == under  # each once
    assert {t for t, who in by.items() if who == competitor} == taken
    assert {t for t, who in by.items() if who == me} == left
    sent = txs_from(chain, me, start)
    assert len(sent) == 3 and all(t["status"] == 1 for t in sent)
    assert chain.eth.get_transaction_count(me) == nonce + 3  # no gas spent on the lost ones
    races = _points(reader, "perpex_keeper_lost_races")
    assert races == {(("reason", "gone"), ("stage", "pending")): 3}


async def test_a_liquidation_mined_behind_a_competitors_is_a_lost_race(
    chain: Web3,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
    reader: InMemoryMetricReader,
) -> None:
    deployment, dep_file = deploy(rpc_url, tmp_path)
    market = LocalMarket(chain, deployment)
    book = open_positions(market, [(ETH, True, 16), (ETH, True, 2)])
    (victim,) = book.tokens(lambda _p, _l, lev: lev == 16)
    competitor = chain.eth.accounts[COMPETITOR]
    me = address_of(KEEPER_KEY)
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        settings = keeper_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, _group())
        async with running_keeper(settings) as keeper:
            await wait_ready(keeper)
            last_look = keeper.presend.last_look

            async def competitor_after_our_check(*args: Any, **kw: Any) -> Any:
                verdict = await last_look(*args, **kw)
                if isinstance(verdict, Go):  # too late for our simulation to see it
                    _liquidate_as(market, competitor, victim, tip=50 * GWEI)
                return verdict

            keeper.presend.last_look = competitor_after_our_check  # type: ignore[method-assign]
            with automine_off(chain):
                start = crash_and_mine(market, ETH, -0.08)
                await wait_until(lambda: len(_pool_from(chain, me)) == 1, within=20)
                rpc(chain, "evm_mine")  # the higher tip goes first: ours reverts
                await wait_until(lambda: keeper.executor.stats["mined_reverted"] == 1, within=20)
                # the next round reads it gone: out of the book
                await wait_until(lambda: victim not in keeper.book, within=20)
            assert keeper.executor.stats["lost_races"] == 1
            assert keeper.window.contested and keeper.window.limit == 1  # one at a time now
    (event,) = liquidations(chain, deployment, start)
    assert (event["tokenId"], event["liquidator"]) == (victim, competitor)
    (ours,) = txs_from(chain, me, start)
    assert ours["status"] == 0 and ours["block"] == event["blockNumber"]
    races = _points(reader, "perpex_keeper_lost_races")
    assert races == {(("reason", "mined_after_competitor"), ("stage", "mined")): 1}


async def test_unprofitable_liquidations_are_skipped_profitable_ones_sent(
    chain: Web3,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
    reader: InMemoryMetricReader,
) -> None:
    deployment, dep_file = deploy(rpc_url, tmp_path)
    market = LocalMarket(chain, deployment)
    book = open_positions(market, [(ETH, True, 15), (ETH, True, 17), (ETH, True, 2)])
    under = book.tokens(lambda _p, _l, lev: lev >= 15)
    me = address_of(KEEPER_KEY)
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        # ETH at a billion vUSDT: ~150k gas at ~2 gwei costs ~300,000 vUSDT, the reward ~100
        pricey = keeper_settings(
            rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, _group(), keeper_native_price=1e9
        )
        nonce = chain.eth.get_transaction_count(me)
        async with running_keeper(pricey) as keeper:
            await wait_ready(keeper)
            start = chain.eth.block_number
            crash(market, ETH, -0.08)
            await wait_until(lambda: keeper.executor.stats["unprofitable"] >= 2, within=20)

            def next_block_skipped_too() -> bool:  # checked again each block, never sent
                rpc(chain, "evm_mine")
                return keeper.executor.stats["unprofitable"] >= 4

            await wait_until(next_block_skipped_too, within=20, every=0.3)
            assert keeper.executor.stats["sent"] == 0 and not keeper.sender.pending
        assert chain.eth.get_transaction_count(me) == nonce
        assert all(market.is_liquidatable(t) for t in under)
        skips = _points(reader, "perpex_keeper_unprofitable_skips")
        assert sum(skips.values()) >= 4
        # the default: ratio 1, ETH priced by the ETH/USDT market's index
        fair = keeper_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, _group())
        async with running_keeper(fair) as keeper:
            await wait_ready(keeper)
            rpc(chain, "evm_mine")  # a round after the book is loaded (its first came before)
            await wait_until(lambda: under <= set(keeper.liquidated), within=30)
            index = market.pm.functions.indexPrice(deployment.market(ETH).market_id_bytes).call()
            assert keeper.native.current() == index
            reward = keeper.executor.stats["reward_wad"]
    events = liquidations(chain, deployment, start)
    assert sorted(e["tokenId"] for e in events) == sorted(under)
    # what the pending-block simulations returned is what the contract paid
    assert reward == sum(e["liquidatorReward"] for e in events) > 0


async def test_a_native_price_market_that_does_not_exist_stops_the_keeper(
    chain: Web3, rpc_url: str, fresh_db: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    _, dep_file = deploy(rpc_url, tmp_path)
    settings = keeper_settings(
        rpc_url,
        fresh_db,
        kafka_bootstrap,
        topic,
        dep_file,
        _group(),
        keeper_native_price_market="DOGE/USDT",
    )
    keeper = Keeper(settings)
    try:
        with pytest.raises(ConfigError) as err:
            await keeper.start()
        assert set(err.value.problems) == {"KEEPER_NATIVE_PRICE_MARKET"}
        assert "DOGE/USDT" in err.value.problems["KEEPER_NATIVE_PRICE_MARKET"]
    finally:
        await keeper.close()
    # a fixed price, or no profitability check, needs no such market
    for over in ({"keeper_native_price": 2500.0}, {"keeper_min_profit_ratio": 0}):
        ok = Keeper(
            keeper_settings(
                rpc_url,
                fresh_db,
                kafka_bootstrap,
                topic,
                dep_file,
                _group(),
                keeper_native_price_market="DOGE/USDT",
                **over,
            )
        )
        try:
            await ok._check_markets()
        finally:
            await ok.close()
