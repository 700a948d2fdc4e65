"""The keeper never stalls: `perpex keeper` behind the fault proxy (about 10 % of requests: HTTP
429, 5xx, answers slower than RPC_TIMEOUT_S, bodies cut short, connections dropped before or
after forwarding, eth_blockNumber 1-4 blocks behind) in front of an anvil mining a block every
second; positions made liquidatable in three waves; the keeper killed with -9 and restarted
twice, the broker restarted once. The first kill comes with liquidations in flight; after the
second, the wallet is left as the issue found it: liquidations of positions that are
liquidatable queued in the node's pool behind a nonce gap (pending == latest).

Asserts: every position that became liquidatable was liquidated within TARGET_BLOCKS; no keeper
transaction reverted (no duplicate liquidation, none of the stale queue a killed run leaves
behind a nonce gap); no nonce gap at the end (latest == pending, nothing queued for the wallet);
the keeper never exited by itself (and exits 0 on SIGTERM)."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from eth_account import Account
from keeper_support import (
    BTC,
    ETH,
    KEEPER_KEY,
    KeeperProcess,
    address_of,
    deploy,
    health_of,
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

from perpex_dev.devstack.accounts import anvil_key
from perpex_dev.devstack.components import Anvil, Broker, StackConfig
from perpex_dev.devstack.fault_proxy import FaultProxy
from perpex_dev.devstack.market import LocalMarket
from perpex_dev.devstack.ports import free_port
from shared.chain.abi import load_abi
from shared.kafka import ensure_topic

pytestmark = pytest.mark.serial  # timing-sensitive: run alone (scripts/test.sh)

TARGET_BLOCKS = 30  # 1 s blocks: a kill -9, a restart and its reconciliation fit well within
RPC_TIMEOUT_S = 1.0


async def test_keeper_under_rpc_faults_kills_and_a_broker_restart(
    fresh_db: str, tmp_path: Path
) -> None:
    anvil = Anvil(StackConfig(data_dir=tmp_path / "anvil", anvil_port=free_port()))
    broker = Broker(StackConfig(data_dir=tmp_path / "broker", kafka_port=free_port()))
    await asyncio.gather(asyncio.to_thread(anvil.start), asyncio.to_thread(broker.start))
    try:
        await _chaos(anvil, broker, fresh_db, tmp_path)
    finally:
        await asyncio.gather(asyncio.to_thread(anvil.stop), asyncio.to_thread(broker.stop))


async def _chaos(anvil: Anvil, broker: Broker, dsn: str, tmp_path: Path) -> None:
    w3 = Web3(Web3.HTTPProvider(anvil.url, request_kwargs={"timeout": 30}))
    deployment, dep_file = deploy(anvil.url, tmp_path)
    market = LocalMarket(w3, deployment)
    spec = [
        *[(ETH, True, lev) for lev in (15, 16, 17, 18, 19, 20)],  # wave 1: ETH -7 %
        *[(BTC, False, lev) for lev in (15, 16, 17, 18, 19, 20)],  # wave 2: BTC +7 %
        *[(ETH, True, lev) for lev in (8, 8, 9, 9, 10, 10)],  # wave 3: ETH -8 % more
        (ETH, True, 2),
        (BTC, False, 2),
        (ETH, False, 3),
        (BTC, True, 3),
    ]
    book = open_positions(market, spec)
    tokens = sorted(book.positions)
    topic = "perpex.events"
    await ensure_topic(broker.url, topic, 3)
    keeper_address = address_of(KEEPER_KEY)
    start_nonce = w3.eth.get_transaction_count(keeper_address)
    start_block = w3.eth.block_number
    isettings = indexer_settings(anvil.url, dsn, broker.url, topic, dep_file)
    proxy = FaultProxy.chaos(anvil.url, rate=0.1, seed=14, delay=RPC_TIMEOUT_S + 0.5)
    await proxy.start()
    procs: list[KeeperProcess] = []
    since: dict[int, int] = {}  # token -> block of the wave that made it liquidatable
    try:
        async with running_indexer(isettings) as indexer:
            await wait_indexed(indexer, w3)
            settings = keeper_settings(
                proxy.url, dsn, broker.url, topic, dep_file, f"g-{uuid.uuid4().hex[:8]}"
            )
            env = keeper_env(
                settings,
                RPC_TIMEOUT_S=str(RPC_TIMEOUT_S),
                MAX_RETRIES="6",
                POLL_INTERVAL_MS="200",
                REPLACE_AFTER_S="4",
                IN_FLIGHT_WAIT_S="15",
            )

            async def start_keeper() -> KeeperProcess:
                proc = await KeeperProcess(env).start()
                procs.append(proc)
                await proc.wait_for("bootstrapped", within=60)
                return proc

            def alive() -> None:
                for p in procs[:-1]:
                    assert p.proc is not None and p.proc.returncode == -signal.SIGKILL, p.lines
                last = procs[-1]
                assert last.proc is not None and last.proc.returncode is None, "\n".join(
                    last.lines[-40:]
                )

            async def wave(pair: str, fraction: float) -> None:
                price = market.price(pair)
                await asyncio.to_thread(market.set_price, pair, int(price * (1 + fraction)))
                block = w3.eth.block_number
                for token, h in health_of(w3, deployment, tokens).items():
                    if h[1] and h[2]:
                        since.setdefault(token, block)

            async def kill_mid_flight(proc: KeeperProcess) -> None:
                # once a liquidation is broadcast (or a few blocks passed), SIGKILL
                b0 = w3.eth.block_number
                await wait_until(
                    lambda: (
                        w3.eth.get_transaction_count(keeper_address, "pending")
                        > w3.eth.get_transaction_count(keeper_address)
                        or w3.eth.block_number > b0 + 4
                    ),
                    within=30,
                    every=0.05,
                )
                alive()
                await proc.kill()

            first = await start_keeper()
            # interval mining from now on (the set-up above was automined)
            rpc(w3, "evm_setAutomine", [False])
            rpc(w3, "evm_setIntervalMining", [1])

            await wave(ETH, -0.07)
            await kill_mid_flight(first)
            second = await start_keeper()
            await wait_until(lambda: set(since) <= set(_liquidated(w3, deployment)), within=60)

            alive()
            await second.kill()
            await wave(BTC, +0.07)
            stale = _gapped_queue(
                w3,
                deployment,
                [t for t in since if t in book.tokens(lambda p, _l, _v: p == BTC)][:3],
            )
            await asyncio.to_thread(broker.stop)
            await asyncio.to_thread(broker.start)  # a new, empty in-memory broker
            await ensure_topic(broker.url, topic, 3)  # a durable Kafka keeps its topics
            third = await start_keeper()
            assert third.saw("nonce gap"), "\n".join(third.lines[-40:])

            await wave(ETH, -0.08)

            def settled() -> bool:
                left = [t for t, h in health_of(w3, deployment, tokens).items() if h[1] and h[2]]
                return not left and w3.eth.get_transaction_count(
                    keeper_address, "pending"
                ) == w3.eth.get_transaction_count(keeper_address)

            await wait_until(settled, within=90, every=0.25)
            alive()
            assert third.proc is not None
            third.proc.send_signal(signal.SIGTERM)
            code = await third.wait_exit(30)
    finally:
        for p in procs:
            await p.kill()
        await proxy.stop()
        _stop_mining(w3)

    assert code == 0, "\n".join(third.lines[-40:])
    tracebacks = [
        "\n".join(p.lines[max(0, i - 3) : i + 25])
        for p in procs
        for i, line in enumerate(p.lines)
        if "Traceback" in line
    ]
    assert not tracebacks, tracebacks[0]
    # every fault kind was met
    for kind in ("429", "5xx", "timeout", "truncate", "drop_before", "drop_after", "lag"):
        assert proxy.faults[kind] > 0, proxy.faults

    # every position that went under was liquidated (first within TARGET_BLOCKS), and none is
    # left liquidatable; a liquidation may be partial, so a position may take several
    events = liquidations(w3, deployment, start_block)
    first: dict[int, dict[str, Any]] = {}
    for e in sorted(events, key=lambda e: (e["blockNumber"], e["tx"])):
        first.setdefault(e["tokenId"], e)
    assert set(since) == set(first), (sorted(since), sorted(first))
    assert len(since) == 18
    delays = {t: first[t]["blockNumber"] - since[t] for t in since}
    assert max(delays.values()) <= TARGET_BLOCKS, delays
    assert all(e["liquidator"] == keeper_address for e in events)
    assert not [t for t, h in health_of(w3, deployment, tokens).items() if h[1] and h[2]]

    # no reverted keeper transaction: no duplicate, no stale queue mined after a gap
    sent = txs_from(w3, keeper_address, start_block)
    mined_hashes = {t["tx"]["hash"].to_0x_hex() for t in sent}
    assert not mined_hashes & set(stale)  # the stale queue was cancelled, never mined
    reverted = [_describe(t) for t in sent if t["status"] != 1]
    assert not reverted, reverted
    liquidating = [t for t in sent if t["tx"]["to"] == deployment.contracts.position_manager]
    assert len(liquidating) == len(events)  # each mined liquidation liquidated something
    # never two at once for one position: its liquidations (if partial, several) are mined in
    # different blocks, each sent after the one before was mined
    blocks_of: dict[int, list[int]] = {}
    for e in events:
        blocks_of.setdefault(e["tokenId"], []).append(e["blockNumber"])
    assert all(len(b) == len(set(b)) for b in blocks_of.values()), blocks_of
    # no nonce gap: every nonce used once, the wallet's queue empty
    nonces = sorted(t["tx"]["nonce"] for t in sent)
    assert nonces == list(range(start_nonce, start_nonce + len(sent)))
    assert w3.eth.get_transaction_count(keeper_address, "pending") == w3.eth.get_transaction_count(
        keeper_address
    )
    pool = rpc(w3, "txpool_inspect")
    assert keeper_address.lower() not in {a.lower() for a in pool["queued"]}, pool
    assert keeper_address.lower() not in {a.lower() for a in pool["pending"]}, pool


def _liquidated(w3: Web3, deployment: Any) -> set[int]:
    return {e["tokenId"] for e in liquidations(w3, deployment, 0)}


def _gapped_queue(w3: Web3, deployment: Any, tokens: list[int]) -> list[str]:
    """What a killed keeper can leave: its liquidations of `tokens` accepted by the node at
    nonces above one it never delivered (pending == latest, the queue invisible to it)."""
    key = anvil_key(KEEPER_KEY).get_secret_value()
    address = address_of(KEEPER_KEY)
    nonce = w3.eth.get_transaction_count(address, "pending")
    pm = w3.eth.contract(
        address=deployment.contracts.position_manager, abi=load_abi("PositionManager")
    )
    hashes = []
    for k, token in enumerate(tokens, start=1):
        tx = {
            "to": pm.address,
            "data": pm.encode_abi("liquidatePosition", args=[token]),
            "value": 0,
            "gas": 600_000,
            "maxFeePerGas": 5 * 10**9,
            "maxPriorityFeePerGas": 10**9,
            "nonce": nonce + k,
            "chainId": 31337,
            "type": 2,
        }
        raw = Account.sign_transaction(tx, key).raw_transaction
        hashes.append(rpc(w3, "eth_sendRawTransaction", ["0x" + raw.hex()]))
    assert w3.eth.get_transaction_count(address, "pending") == nonce  # the gap hides them
    return hashes


def _describe(t: dict[str, Any]) -> str:
    return f"nonce {t['tx']['nonce']} to {t['tx']['to']} in block {t['block']}"


def _stop_mining(w3: Web3) -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        try:
            rpc(w3, "evm_setIntervalMining", [0])
            return
        except Exception:
            time.sleep(0.1)
