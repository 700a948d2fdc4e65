"""`perpex bench keeper`: liquidation latency and health-check RPC cost, vs a naive keeper.

1. A private anvil, PostgreSQL and broker; Perp-EX deployed; --positions positions opened over
   ETH/USDT and BTC/USDT (longs and shorts alternating, so the vAMMs stay near the index).
   Exactly --liquidatable of them (half per market) are built to go under when ETH drops and
   BTC rises by --move; --near others end within MARGIN_BUFFER of maintenance but stay
   healthy (the off-chain ranking must confirm them on-chain and leave them alone); the rest
   stay far from maintenance.
2. The real indexer runs as a `perpex indexer` process and syncs everything to PostgreSQL and
   Kafka.
3. Naive baseline: for --naive-blocks blocks, call isPositionLiquidatable once per open position
   per block (what a keeper without a book and a batch view does), counting its JSON-RPC
   requests at the RPC layer.
4. This keeper (in-process, so its RPC counters can be read): bootstraps the book from
   PostgreSQL, joins the consumer group; anvil mines a block every --block-time seconds. Both
   price moves are sent together and land in one block P; the run waits until every
   liquidatable position is liquidated and reads the liquidation blocks from the chain.

health_rpc_calls_per_block counts every JSON-RPC request of the keeper's health path
(eth_blockNumber polls at POLL_INTERVAL_MS, one indexPrice per market per block, market
refreshes, getPositionsHealth batches) from just before block P is mined until the keeper has
processed the block holding the last liquidation, divided by the blocks in that window.
naive_rpc_calls_per_block is the baseline's requests (its eth_blockNumber reads and its
isPositionLiquidatable calls) divided by the blocks it swept.

With --fault-rate R (e.g. 0.1) the keeper talks to anvil through the fault proxy
(perpex_dev/devstack/fault_proxy.py, in a process of its own): R of its requests get HTTP 429 or
5xx, an answer slower than RPC_TIMEOUT_S (--rpc-timeout, 2 s), a body cut short, or the
connection dropped before or after forwarding, and eth_blockNumber answers 1-4 blocks behind at
rate R. The naive baseline and the indexer talk to anvil directly.

reverted_txs counts the keeper's transactions mined with status 0 from block P on;
nonce_gaps, once the keeper has nothing left in flight, the nonces below the highest one the
node's txpool holds for the keeper's wallet that nothing holds (each would stall everything
queued behind it).

Details go to stderr; the last stdout line is one JSON object:
{"positions", "liquidatable", "liquidated", "blocks_to_last", "health_rpc_calls_per_block",
 "naive_rpc_calls_per_block", "rpc_ratio", "reverted_txs", "nonce_gaps", "fault_rate"}.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import click
from web3 import Web3

from perpex_dev.bench.keeper_chain import (
    LIQUIDATED,
    Chain,
    keeper_wallet_state,
    naive_baseline,
    open_and_sink,
)
from perpex_dev.bench.keeper_chain import info as _info

KEEPER_KEY = 1
FUNDING_KEY = 2

log = logging.getLogger("perpex.bench.keeper")


# ---------------------------------------------------------------------- the run
def _indexer_env(stack: Any, dep_file: Path, topic: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PERPEX_"))}
    env.update(
        {
            "RPC_URL": stack["rpc_url"],
            "DB_URI": stack["db_uri"],
            "KAFKA_BOOTSTRAP_SERVERS": stack["kafka"],
            "KAFKA_TOPIC": topic,
            "DEPLOYMENT_FILE": str(dep_file),
            "POLL_INTERVAL_MS": "100",
            "KAFKA_PARTITIONS": "6",
            "HEALTH_PORT": "0",
            "LOG_LEVEL": "WARNING",
        }
    )
    return env


async def _wait_indexed(db_uri: str, head: int, within: float) -> None:
    import asyncpg

    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            conn = await asyncpg.connect(db_uri)
            try:
                synced = await conn.fetchval("SELECT min(last_synced_block) FROM sync_status")
                unsent = await conn.fetchval("SELECT count(*) FROM outbox WHERE sent_at IS NULL")
            finally:
                await conn.close()
            if synced is not None and synced >= head and unsent == 0:
                return
        except Exception:
            pass
        await asyncio.sleep(0.5)
    raise click.ClickException(f"the indexer did not reach block {head} in {within:.0f}s")


class ProxyProcess:
    """The fault proxy in a process of its own (its work stays off the keeper's process)."""

    def __init__(self, upstream: str, rate: float, delay: float):
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "perpex_dev.devstack.fault_proxy",
                upstream,
                "--rate",
                str(rate),
                "--delay",
                str(delay),
                "--seed",
                "14",
            ],
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise click.ClickException("the fault proxy did not start")

    def stop(self) -> dict[str, Any]:
        self.proc.send_signal(signal.SIGTERM)
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return {}
        try:
            return dict(json.loads(out.strip().splitlines()[-1]))
        except (ValueError, IndexError):
            return {}


async def keeper_phase(
    stack: dict[str, str],
    dep_file: Path,
    topic: str,
    chain: Chain,
    expected: set[int],
    block_time: int,
    poll_ms: int,
    move: float,
    keeper_rpc_url: str | None = None,
    rpc_timeout_s: float = 15.0,
) -> dict[str, Any]:
    from perpex_dev.devstack.accounts import anvil_key
    from services.keeper.app import Keeper
    from services.keeper.settings import load_keeper_settings
    from shared.health import HealthState

    settings = load_keeper_settings(
        rpc_url=keeper_rpc_url or stack["rpc_url"],
        rpc_timeout_s=rpc_timeout_s,
        db_uri=stack["db_uri"],
        kafka_bootstrap_servers=stack["kafka"],
        kafka_topic=topic,
        deployment_file=dep_file,
        keeper_private_key=anvil_key(KEEPER_KEY).get_secret_value(),
        funding_private_key=anvil_key(FUNDING_KEY).get_secret_value(),
        private_key=None,
        position_manager_address=None,
        markets="",
        keeper_group_id="perpex-keeper-bench",
        poll_interval_ms=poll_ms,
        keeper_min_balance_eth=1.0,
    )
    keeper = Keeper(settings, HealthState())
    rounds: list[tuple[float, int, int]] = []  # (time, block, health calls so far)
    keeper.round_listeners.append(
        lambda s: rounds.append((time.monotonic(), s["block"], keeper.health_rpc.total))
    )
    t0 = time.perf_counter()
    await keeper.start()
    task = asyncio.create_task(keeper.run(), name="keeper")
    try:
        while not (keeper.health.ready and len(keeper.book) >= len(expected)):
            if task.done():
                task.result()
            await asyncio.sleep(0.1)
        _info(
            "keeper ready in %.1fs: %d positions in its book",
            time.perf_counter() - t0,
            len(keeper.book),
        )
        chain.rpc.call("evm_setAutomine", [False])
        chain.rpc.call("evm_setIntervalMining", [block_time])  # whole seconds
        # steady state: a few blocks with nothing to do
        b0 = chain.block_number()
        while chain.block_number() < b0 + 3:
            await asyncio.sleep(0.05)
        steady_from = next((r for r in rounds if r[1] > b0), None)
        # the price move: both feeds, sent together right after a block, land in one block
        b = chain.block_number()
        while chain.block_number() == b:
            await asyncio.sleep(0.01)
        eth0 = float(chain.d.market("ETH/USDT").initial_price)
        btc0 = float(chain.d.market("BTC/USDT").initial_price)
        calls_before = keeper.health_rpc.total
        steady_calls = calls_before - steady_from[2] if steady_from else 0
        steady_blocks = (rounds[-1][1] - steady_from[1]) if steady_from and rounds else 0
        chain.rpc.batch(
            [
                chain.feed_tx("ETH/USDT", eth0 * (1 - move)),
                chain.feed_tx("BTC/USDT", btc0 * (1 + move)),
            ]
        )
        move_sent = time.monotonic()
        deadline = move_sent + 120
        while time.monotonic() < deadline:
            if expected <= set(keeper.liquidated):
                break
            if task.done():
                task.result()
            await asyncio.sleep(0.05)
        all_done = time.monotonic()
        # nothing left in flight before the wallet is inspected (the ledger settles)
        await keeper.sender.wait_pending(60)
        liq_logs = chain.logs(LIQUIDATED, b + 1)
        last_block = max((int(lg["blockNumber"], 16) for lg in liq_logs), default=None)
        # let the keeper process the last liquidation's block
        while last_block is not None and not any(r[1] >= last_block for r in rounds):
            await asyncio.sleep(0.05)
        calls_to_last = next(r[2] for r in rounds if last_block is not None and r[1] >= last_block)
        price_block = None
        feeds = {chain.d.market(p).oracle_feed.lower() for p in ("ETH/USDT", "BTC/USDT")}
        answered = (
            Web3.keccak(text="AnswerUpdated(int256,uint256,uint256)").hex().removeprefix("0x")
        )
        set_logs = chain.rpc.call(
            "eth_getLogs",
            [
                {
                    "address": list(feeds),
                    "topics": ["0x" + answered],
                    "fromBlock": hex(b + 1),
                    "toBlock": "latest",
                }
            ],
        )
        price_block = max(int(lg["blockNumber"], 16) for lg in set_logs)
        first_price_block = min(int(lg["blockNumber"], 16) for lg in set_logs)
    finally:
        with contextlib.suppress(Exception):
            chain.rpc.call("evm_setIntervalMining", [0])
            chain.rpc.call("evm_setAutomine", [True])
        keeper.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 60)
    liquidated = {int(lg["topics"][1], 16) for lg in liq_logs}
    wallet = keeper_wallet_state(chain, keeper.sender.address, b + 1)
    seen_move = next((r[0] for r in rounds if r[1] >= price_block), None)
    ex = keeper.executor
    first_sent = (ex.first_sent_at - seen_move) if ex.first_sent_at and seen_move else None
    last_sent = (ex.last_sent_at - seen_move) if ex.last_sent_at and seen_move else None
    keeper_addr = keeper.sender.address.lower()
    by_keeper = [lg for lg in liq_logs if "0x" + lg["data"][26:66].lower() == keeper_addr]
    window_blocks = (last_block - price_block + 1) if last_block is not None else 1
    per_block: dict[int, int] = {}
    for lg in liq_logs:
        n = int(lg["blockNumber"], 16)
        per_block[n] = per_block.get(n, 0) + 1
    return {
        "liquidated": len(liquidated & expected),
        "extra_liquidated": len(liquidated - expected),
        "by_keeper": len(by_keeper),
        "price_block": price_block,
        "price_blocks_differ": first_price_block != price_block,
        "last_block": last_block,
        "blocks_to_last": (last_block - price_block) if last_block is not None else None,
        "per_block": dict(sorted(per_block.items())),
        "health_calls_window": calls_to_last - calls_before,
        "window_blocks": window_blocks,
        "health_calls_per_block": (calls_to_last - calls_before) / window_blocks,
        "steady_calls_per_block": (steady_calls / steady_blocks) if steady_blocks else None,
        "seconds_to_all": round(all_done - move_sent, 2),
        "first_broadcast_s": round(first_sent, 2) if first_sent is not None else None,
        "last_broadcast_s": round(last_sent, 2) if last_sent is not None else None,
        "executor": dict(keeper.executor.stats),
        "wallet": wallet,
        "sender": {
            "sent": keeper.sender.stats.sent,
            "replaced": keeper.sender.stats.replaced,
            "rebroadcast": keeper.sender.stats.rebroadcast,
            "cancelled": keeper.sender.stats.cancelled,
        },
        "rpc_errors": {"health": keeper.health_rpc.errors, "exec": keeper.exec_rpc.errors},
        "exec_rpc": keeper.exec_rpc.snapshot(),
        "health_rpc": keeper.health_rpc.snapshot(),
    }


def run_bench(
    positions: int,
    liquidatable: int,
    near: int,
    block_time: int,
    naive_blocks: int,
    poll_ms: int,
    move: float,
    gas_limit: int | None,
    fault_rate: float = 0.0,
    rpc_timeout_s: float = 2.0,
) -> dict[str, Any]:
    from perpex_dev.devstack.accounts import anvil_key
    from perpex_dev.devstack.ephemeral import ephemeral_stack
    from shared.chain.deploy import deploy_local
    from shared.kafka import ensure_topic

    topic = "perpex.events"
    with (
        ephemeral_stack() as stack,
        tempfile.TemporaryDirectory(prefix="perpex-keeper-bench-") as tmp,
    ):
        anvil = stack.anvil
        env = {"rpc_url": anvil.url, "db_uri": stack.postgres.url, "kafka": stack.broker.url}
        dep_file = Path(tmp) / "deployment.json"
        deployment = deploy_local(anvil.url, anvil_key(0), dep_file)
        chain = Chain(anvil.url, deployment)
        if gas_limit:
            chain.rpc.call("anvil_setBlockGasLimit", [hex(gas_limit)])
        opened, expected, after = open_and_sink(chain, positions, liquidatable, near, move)
        near_count = sum(1 for h in after if h[1] and not h[2] and h[3] * 10 < h[4] * 11)
        _info(
            "the move makes %d positions liquidatable; %d more end within 10%% of maintenance",
            len(expected),
            near_count,
        )
        naive_calls, naive_sweep, _ = asyncio.run(
            naive_baseline(
                anvil.url,
                deployment.contracts.position_manager,
                opened,
                naive_blocks,
                chain,
                poll_ms / 1000,
            )
        )
        _info(
            "naive baseline: %.0f requests per block, %.2fs per sweep of %d positions",
            naive_calls,
            naive_sweep,
            len(opened),
        )
        asyncio.run(ensure_topic(stack.broker.url, topic, 6))
        log_path = Path(tmp) / "indexer.log"
        with open(log_path, "w") as log_file:
            indexer = subprocess.Popen(
                [sys.executable, "-m", "perpex_cli.main", "indexer"],
                env=_indexer_env(env, dep_file, topic),
                stdout=log_file,
                stderr=subprocess.STDOUT,
            )
            try:
                t1 = time.perf_counter()
                asyncio.run(_wait_indexed(stack.postgres.url, chain.block_number(), 600))
                _info("indexer synced and published in %.1fs", time.perf_counter() - t1)
                proxy = (
                    ProxyProcess(anvil.url, fault_rate, delay=rpc_timeout_s + 0.5)
                    if fault_rate > 0
                    else None
                )
                try:
                    result = asyncio.run(
                        keeper_phase(
                            env,
                            dep_file,
                            topic,
                            chain,
                            expected,
                            block_time,
                            poll_ms,
                            move,
                            keeper_rpc_url=proxy.url if proxy else None,
                            rpc_timeout_s=rpc_timeout_s if proxy else 15.0,
                        )
                    )
                finally:
                    faults = proxy.stop() if proxy else {}
                if faults:
                    _info("fault proxy: %s", json.dumps(faults.get("faults")))
            finally:
                indexer.send_signal(signal.SIGTERM)
                try:
                    indexer.wait(30)
                except subprocess.TimeoutExpired:
                    indexer.kill()
    _info("keeper: %s", json.dumps(result, default=str))
    c = result["health_calls_per_block"]
    details = {
        "block_time_s": block_time,
        "poll_interval_ms": poll_ms,
        "naive_seconds_per_sweep": round(naive_sweep, 2),
        "keeper_seconds_to_all": result["seconds_to_all"],
        "keeper_first_broadcast_s_after_seeing_the_move": result["first_broadcast_s"],
        "keeper_last_broadcast_s_after_seeing_the_move": result["last_broadcast_s"],
        "near_positions_within_buffer": near_count,
        "gas_limit": gas_limit or 30_000_000,
        "liquidations_per_block": result["per_block"],
        "steady_health_calls_per_block": result["steady_calls_per_block"],
        "faults_injected": (faults or {}).get("faults"),
        "keeper_requests_through_proxy": (faults or {}).get("requests"),
        "sender": result["sender"],
        "keeper_rpc_errors": result["rpc_errors"],
        "keeper_txs_mined": result["wallet"]["mined"],
    }
    _info("details: %s", json.dumps(details))
    return {
        "positions": positions,
        "liquidatable": len(expected),
        "liquidated": result["liquidated"],
        "blocks_to_last": result["blocks_to_last"],
        "health_rpc_calls_per_block": round(c, 2),
        "naive_rpc_calls_per_block": round(naive_calls, 2),
        "rpc_ratio": round(naive_calls / c, 1) if c else None,
        "reverted_txs": result["wallet"]["reverted"],
        "nonce_gaps": result["wallet"]["nonce_gaps"],
        "fault_rate": fault_rate,
    }


@click.command("keeper")
@click.option("--positions", default=10_000, show_default=True)
@click.option("--liquidatable", default=500, show_default=True, help="positions the move sinks")
@click.option("--near", default=200, show_default=True, help="positions left near maintenance")
@click.option("--block-time", default=2, show_default=True, help="seconds between blocks")
@click.option("--naive-blocks", default=2, show_default=True)
@click.option("--poll-ms", default=100, show_default=True, help="keeper POLL_INTERVAL_MS")
@click.option("--move", default=0.08, show_default=True, help="ETH falls / BTC rises by this")
@click.option("--gas-limit", type=int, default=None, help="anvil block gas limit (default 30M)")
@click.option(
    "--fault-rate",
    type=click.FloatRange(0, 0.9),
    default=0.0,
    show_default=True,
    help="share of the keeper's requests the fault proxy disturbs (0: no proxy)",
)
@click.option(
    "--rpc-timeout",
    type=float,
    default=2.0,
    show_default=True,
    help="the keeper's RPC_TIMEOUT_S with --fault-rate (slow answers take 0.5 s longer)",
)
def bench(
    positions: int,
    liquidatable: int,
    near: int,
    block_time: int,
    naive_blocks: int,
    poll_ms: int,
    move: float,
    gas_limit: int | None,
    fault_rate: float,
    rpc_timeout: float,
) -> None:
    """Keeper vs a naive isPositionLiquidatable-per-position keeper (JSON on the last line)."""
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    logging.getLogger("aiokafka").setLevel(logging.CRITICAL)
    from shared.telemetry import setup_telemetry

    def _terminate(signum: int, _frame: Any) -> None:
        raise SystemExit(128 + signum)  # unwind: stop the indexer and the stack

    signal.signal(signal.SIGTERM, _terminate)

    setup_telemetry("perpex-keeper-bench")
    result = run_bench(
        positions,
        liquidatable,
        near,
        block_time,
        naive_blocks,
        poll_ms,
        move,
        gas_limit,
        fault_rate,
        rpc_timeout,
    )
    print(json.dumps(result), flush=True)
