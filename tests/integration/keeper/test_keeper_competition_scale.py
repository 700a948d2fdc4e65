"""Two independent keeper deployments compete over 200 liquidations on one anvil chain.

Each keeper has its own wallet and its own consumer group (so each one's book, fed by the
indexer, holds every position: they are competitors, not replicas sharing the work), and they
do not know about each other. anvil mines a block every second. The price moves in four waves
(ETH falls, BTC rises, a little more each time) that sink 73, 61, 51 and 15 positions, measured
beforehand on snapshots of the chain; both keepers go for the same positions in the same blocks.

Every position the moves sink is liquidated exactly once (one PositionLiquidated, the whole
position), nothing else is, and fewer than 5 % of the two wallets' mined transactions revert
(measured: 1-4 %): a keeper that finds the other's liquidation already in the pending block
(its re-simulation just before sending) drops the position without spending gas, and after
its first lost race it holds one liquidation at a time between that simulation and the
broadcast (window.py). Measured without the pending-block re-simulation (simulating on the
latest block instead): ~44 % of the sends revert; with it but 32 liquidations at once between
simulation and broadcast: ~20 %."""

from __future__ import annotations

import asyncio
import time
import uuid
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from keeper_support import (
    KEEPER_KEY,
    address_of,
    deploy,
    indexer_settings,
    keeper_settings,
    liquidations,
    running_indexer,
    running_keeper,
    wait_indexed,
    wait_ready,
    wait_until,
)
from web3 import Web3

from perpex_dev.bench.keeper_chain import Chain, keeper_wallet_state, measure_move, open_and_sink
from services.keeper.app import Keeper

pytestmark = pytest.mark.serial  # timing-sensitive: run alone (scripts/test.sh)

RIVAL_KEY = 9  # an anvil account no other role uses
POSITIONS = 1_200  # the plan needs the far-from-maintenance ones to keep the vAMMs balanced
LIQUIDATABLE = 200
WAVES = (0.03, 0.035, 0.04, 0.045)  # ETH falls / BTC rises by this (from the start)
BLOCK_TIME_S = 1


def _quiet(*_args: Any) -> None:
    pass


def _wave_sets(bench: Chain, opened: list[int]) -> list[set[int]]:
    """The positions each wave newly sinks, read on snapshots that are reverted."""
    seen: set[int] = set()
    out = []
    for move in WAVES:
        sunk = {int(h[0]) for h in measure_move(bench, move, opened) if h[2]}
        out.append(sunk - seen)
        seen |= sunk
    return out


def _move_prices(bench: Chain, move: float) -> None:
    """Both price updates, sent for the next interval-mined block."""
    eth0 = float(bench.d.market("ETH/USDT").initial_price)
    btc0 = float(bench.d.market("BTC/USDT").initial_price)
    bench.rpc.batch(
        [bench.feed_tx("ETH/USDT", eth0 * (1 - move)), bench.feed_tx("BTC/USDT", btc0 * (1 + move))]
    )


def _all_gone(bench: Chain, tokens: frozenset[int]) -> bool:
    return not any(exists for _t, exists, *_ in bench.health(sorted(tokens)))


def _idle(*keepers: Keeper) -> bool:
    return all(not k.executor.jobs and not k.sender.pending for k in keepers)


async def test_two_keepers_compete_over_200_liquidations(
    chain: Web3, rpc_url: str, fresh_db: str, kafka_bootstrap: str, topic: str, tmp_path: Path
) -> None:
    deployment, dep_file = deploy(rpc_url, tmp_path)
    bench = Chain(rpc_url, deployment)
    opened, sunk, _ = await asyncio.to_thread(
        open_and_sink, bench, POSITIONS, LIQUIDATABLE, 0, WAVES[-1], log=_quiet
    )
    assert len(sunk) == LIQUIDATABLE
    waves = _wave_sets(bench, opened)
    assert set().union(*waves) == sunk and all(waves), [len(w) for w in waves]
    wallets = [address_of(KEEPER_KEY), address_of(RIVAL_KEY)]
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain, within=60)

        def settings(key: int) -> Any:
            group = f"keeper-{key}-{uuid.uuid4().hex[:6]}"  # a deployment of its own
            return keeper_settings(
                rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, group, key_index=key
            )

        async with (
            running_keeper(settings(KEEPER_KEY)) as k1,
            running_keeper(settings(RIVAL_KEY)) as k2,
        ):
            await wait_ready(k1)
            await wait_ready(k2)
            assert set(k1.book.positions) == set(k2.book.positions) == set(opened)
            start = chain.eth.block_number + 1
            t0 = time.monotonic()
            bench.rpc.call("evm_setIntervalMining", [BLOCK_TIME_S])
            try:
                gone: set[int] = set()
                for move, wave in zip(WAVES, waves, strict=True):
                    _move_prices(bench, move)
                    gone |= wave

                    await wait_until(partial(_all_gone, bench, frozenset(gone)), 30, 0.2)
                await wait_until(lambda: _idle(k1, k2), within=30)
            finally:
                bench.rpc.call("evm_setIntervalMining", [0])
                bench.rpc.call("evm_setAutomine", [True])
            elapsed = time.monotonic() - t0
            stats = [dict(k.executor.stats) for k in (k1, k2)]
            assert k1.window.contested and k2.window.contested  # each saw the other
    events = liquidations(chain, deployment, start)
    per_token: dict[int, int] = {}
    for e in events:
        per_token[e["tokenId"]] = per_token.get(e["tokenId"], 0) + 1
    assert set(per_token) == sunk  # every sunk position, nothing else
    assert all(n == 1 for n in per_token.values()), {t: n for t, n in per_token.items() if n > 1}
    assert all(e["remainingSize"] == 0 for e in events)
    by = {w: sum(1 for e in events if e["liquidator"] == w) for w in wallets}
    assert sum(by.values()) == LIQUIDATABLE
    state = [keeper_wallet_state(bench, w, start) for w in wallets]
    sent = sum(s["mined"] for s in state)
    reverted = sum(s["reverted"] for s in state)
    print(
        f"\ncompetition: {elapsed:.1f}s, liquidations by wallet {list(by.values())}, "
        f"mined {sent}, reverted {reverted} ({reverted / max(sent, 1):.1%}), "
        f"keeper stats {stats}"
    )
    assert all(s["in_flight"] == 0 and s["nonce_gaps"] == 0 for s in state)
    assert sent == LIQUIDATABLE + reverted  # every successful send is one of the liquidations
    assert reverted < 0.05 * sent
    assert sum(s["mined_reverted"] for s in stats) == reverted  # each keeper saw its own
    assert all(n > 0 for n in by.values())  # both kept: a real competition
