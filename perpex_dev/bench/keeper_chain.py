"""Chain set-up and reads for the keeper benchmark and the keeper's scale tests.

`Chain` sends batches of eth_sendTransaction from anvil's unlocked accounts (no signing in
Python) with automine off, mining until the pool is empty; `position_plan` + `build_positions`
open thousands of positions in seconds (longs and shorts balanced so the vAMMs stay at the
index); `open_and_sink` opens them and makes exactly the planned ones go under with a price move
(measured on a snapshot of the chain, margin added to any other the move would also sink);
`keeper_wallet_state` reads a wallet's mined and reverted transactions and nonce gaps;
`naive_baseline` is the benchmark's per-position baseline.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Callable
from typing import Any

import click
from eth_abi import decode as abi_decode
from web3 import Web3

WAD = 10**18
OPENED = ("PositionManager", "PositionOpened")
LIQUIDATED = ("PositionManager", "PositionLiquidated")
TRADERS = (3, 4, 5, 6, 7, 8)
SETUP_MAX_FEE = 50 * 10**9


def info(msg: str, *args: Any) -> None:
    print(msg % args if args else msg, file=sys.stderr, flush=True)


class Chain:
    """Batched eth_sendTransaction from anvil's unlocked accounts (no signing in Python)."""

    def __init__(self, url: str, deployment: Any):
        from perpex_dev.loadgen import AnvilRpc
        from shared.chain.abi import load_abi

        self.url = url
        self.rpc = AnvilRpc(url, timeout=300)
        self.d = deployment
        w3 = Web3()
        c = deployment.contracts
        self.pm = w3.eth.contract(address=c.position_manager, abi=load_abi("PositionManager"))
        self.vault = w3.eth.contract(address=c.vault, abi=load_abi("Vault"))
        self.token = w3.eth.contract(address=c.collateral_token, abi=load_abi("CollateralToken"))
        self.feed_abi = load_abi("SettableFeed")
        self.accounts = [Web3.to_checksum_address(a) for a in self.rpc.call("eth_accounts")]
        self.nonces: dict[str, int] = {}

    def tx(self, sender: str, to: str, data: str, gas: int = 900_000) -> tuple[str, list[Any]]:
        if sender not in self.nonces:
            self.nonces[sender] = int(
                self.rpc.call("eth_getTransactionCount", [sender, "pending"]), 16
            )
        nonce = self.nonces[sender]
        self.nonces[sender] = nonce + 1
        tx = {
            "from": sender,
            "to": to,
            "data": data,
            "gas": hex(gas),
            "nonce": hex(nonce),
            "maxFeePerGas": hex(SETUP_MAX_FEE),
            "maxPriorityFeePerGas": hex(10**7),
        }
        return ("eth_sendTransaction", [tx])

    def send_all(self, txs: list[tuple[str, list[Any]]], batch: int = 1000) -> None:
        """Send with automine off and mine until the pool is empty. The base fee is held at
        1 gwei while setting up (dozens of full blocks would otherwise push it up ~12% a
        block, stranding transactions and leaving the keeper a distorted fee market)."""
        self.rpc.call("evm_setAutomine", [False])
        try:
            for i in range(0, len(txs), batch):
                self.rpc.batch(txs[i : i + batch])
                idle = 0
                while True:
                    status = self.rpc.call("txpool_status")
                    pending, queued = int(status["pending"], 16), int(status["queued"], 16)
                    if pending == 0 and queued == 0:
                        break
                    idle = idle + 1 if pending == 0 else 0
                    if idle > 3:
                        raise click.ClickException(f"{queued} set-up transactions stuck")
                    self.rpc.call("anvil_setNextBlockBaseFeePerGas", [hex(10**9)])
                    self.rpc.call("evm_mine")
        finally:
            self.rpc.call("evm_setAutomine", [True])

    def block_number(self) -> int:
        return int(self.rpc.call("eth_blockNumber"), 16)

    def feed_tx(self, pair: str, price: float) -> tuple[str, list[Any]]:
        m = self.d.market(pair)
        feed = Web3().eth.contract(address=m.oracle_feed, abi=self.feed_abi)
        data = feed.encode_abi("setPrice", args=[int(price * 10**m.feed_decimals)])
        return self.tx(self.d.deployer, m.oracle_feed, data, gas=200_000)

    def logs(self, event: tuple[str, str], from_block: int) -> list[dict[str, Any]]:
        from shared.chain.abi import event_topic

        topic = event_topic(*event)
        return list(
            self.rpc.call(
                "eth_getLogs",
                [
                    {
                        "address": self.pm.address,
                        "topics": [topic],
                        "fromBlock": hex(from_block),
                        "toBlock": "latest",
                    }
                ],
            )
        )

    def health(self, tokens: list[int]) -> list[tuple[Any, ...]]:
        out: list[tuple[Any, ...]] = []
        for i in range(0, len(tokens), 500):
            data = self.pm.encode_abi("getPositionsHealth", args=[tokens[i : i + 500]])
            raw = self.rpc.call("eth_call", [{"to": self.pm.address, "data": data}, "latest"])
            (rows,) = abi_decode(
                ["(uint256,bool,bool,int256,uint256,uint256)[]"], bytes.fromhex(raw[2:])
            )
            out += [tuple(r) for r in rows]
        return out


def position_plan(positions: int, liquidatable: int, near: int) -> list[tuple[str, bool, int]]:
    """(pair, is_long, leverage in tenths) for every position.

    ETH drops and BTC rises by the move (8% by default): ETH longs and BTC shorts at 15-20x go
    under; 9.5x ETH longs / 9.2x BTC shorts end ~5-10% above maintenance (near); everything
    else (2-7x on the losing side, a little more on the winning side so that both sides hold
    the same notional and the vAMM stays at the index) stays far from it."""
    rng = random.Random(7)
    plan: list[tuple[str, bool, int]] = []
    for m, pair in enumerate(("ETH/USDT", "BTC/USDT")):
        losing_long = pair == "ETH/USDT"
        n = positions // 2 + (positions % 2 if m == 1 else 0)
        k = liquidatable // 2 + (liquidatable % 2 if m == 1 else 0)
        nn = near // 2 + (near % 2 if m == 1 else 0)
        skew = 0  # losing-side minus winning-side leverage (tenths), same collateral each
        for i in range(k):
            lev = 150 + (i % 51)
            plan.append((pair, losing_long, lev))
            skew += lev
        for _ in range(nn):
            lev = 95 if losing_long else 92
            plan.append((pair, losing_long, lev))
            skew += lev
        far = n - k - nn
        winning = far // 2
        base = [20 + (i % 51) for i in range(far)]
        skew += sum(base[winning:]) - sum(base[:winning])
        extra = skew / winning if winning else 0
        for i in range(far):
            if i < winning:
                plan.append((pair, not losing_long, base[i] + round(extra)))
            else:
                plan.append((pair, losing_long, base[i]))
    rng.shuffle(plan)  # interleave markets and kinds so the skew never builds up
    return plan


def build_positions(chain: Chain, plan: list[tuple[str, bool, int]], collateral: int) -> None:
    traders = [chain.accounts[i] for i in TRADERS]
    per_trader = collateral * (len(plan) // len(traders) + 2) * 2
    deployer = chain.d.deployer
    fund: list[tuple[str, list[Any]]] = []
    for t in traders:
        fund.append(
            chain.tx(
                deployer, chain.token.address, chain.token.encode_abi("mint", args=[t, per_trader])
            )
        )
        fund.append(
            chain.tx(
                t,
                chain.token.address,
                chain.token.encode_abi("approve", args=[chain.vault.address, per_trader]),
            )
        )
        fund.append(
            chain.tx(t, chain.vault.address, chain.vault.encode_abi("deposit", args=[per_trader]))
        )
    chain.send_all(fund)
    txs = []
    for i, (pair, is_long, lev10) in enumerate(plan):
        mid = chain.d.market(pair).market_id_bytes
        data = chain.pm.encode_abi(
            "openPosition", args=[mid, is_long, collateral, lev10 * WAD // 10, 0]
        )
        txs.append(chain.tx(traders[i % len(traders)], chain.pm.address, data, gas=400_000))
    chain.send_all(txs)


def measure_move(chain: Chain, move: float, tokens: list[int]) -> list[tuple[Any, ...]]:
    """Health of `tokens` after the price move, read on a snapshot that is then reverted."""
    snap = chain.rpc.call("evm_snapshot")
    eth0 = float(chain.d.market("ETH/USDT").initial_price)
    btc0 = float(chain.d.market("BTC/USDT").initial_price)
    try:
        chain.send_all(
            [
                chain.feed_tx("ETH/USDT", eth0 * (1 - move)),
                chain.feed_tx("BTC/USDT", btc0 * (1 + move)),
            ]
        )
        return chain.health(tokens)
    finally:
        chain.rpc.call("evm_revert", [snap])
        chain.nonces.clear()


def open_and_sink(
    chain: Chain,
    positions: int,
    liquidatable: int,
    near: int,
    move: float,
    collateral: int = 250 * WAD,  # 2x: 500 >= minNotional
    log: Callable[..., None] = info,
) -> tuple[list[int], set[int], list[tuple[Any, ...]]]:
    """Open `position_plan(positions, liquidatable, near)`; returns (token ids opened, the ones
    the move (ETH falls, BTC rises by `move`) makes liquidatable, every position's health after
    the move, read on a snapshot that is reverted)."""
    t0 = time.perf_counter()
    first = chain.block_number() + 1
    plan = position_plan(positions, liquidatable, near)
    build_positions(chain, plan, collateral)
    opened_logs = chain.logs(OPENED, first)
    opened = [int(lg["topics"][1], 16) for lg in opened_logs]
    owners = {
        int(lg["topics"][1], 16): Web3.to_checksum_address("0x" + lg["topics"][2][-40:])
        for lg in opened_logs
    }
    levs = {int(lg["topics"][1], 16): int(lg["data"][2 + 128 : 2 + 192], 16) for lg in opened_logs}
    if len(opened) != positions:
        raise click.ClickException(f"opened {len(opened)} positions, wanted {positions}")
    # Which positions the move sinks, asked of the chain itself on a copy of the state
    # (snapshot, move, read, revert): K is measured, not assumed. The 15-20x positions
    # are built to go under; any other that would (a vAMM entry a little off the index)
    # gets margin added until exactly those are liquidatable.
    fragile = {t for t, lev in levs.items() if lev >= 15 * WAD}
    for attempt in range(4):
        after = measure_move(chain, move, opened)
        liq = {int(h[0]) for h in after if h[2]}
        if fragile - liq:
            raise click.ClickException(f"{len(fragile - liq)} 15-20x positions survive the move")
        extra = liq - fragile
        if not extra:
            break
        if attempt == 3:
            raise click.ClickException(f"{len(extra)} positions still go under unexpectedly")
        log("adding margin to %d positions the move would also sink", len(extra))
        chain.send_all(
            [
                chain.tx(
                    owners[t],
                    chain.pm.address,
                    chain.pm.encode_abi("addMargin", args=[t, 100 * WAD]),
                )
                for t in sorted(extra)
            ]
        )
    log(
        "%d positions opened in %.1fs (head block %d)",
        len(opened),
        time.perf_counter() - t0,
        chain.block_number(),
    )
    return opened, liq, after


async def naive_baseline(
    rpc_url: str, pm_address: str, tokens: list[int], blocks: int, chain: Chain, poll_s: float
) -> tuple[float, float, int]:
    """Per block: isPositionLiquidatable for every position. Returns (calls per block,
    seconds per sweep, liquidatable seen in the last sweep)."""
    from eth_utils import function_signature_to_4byte_selector

    from services.keeper.rpc import RpcCounter, counting_web3

    counter = RpcCounter()
    w3 = counting_web3(rpc_url, counter, timeout=60)
    selector = function_signature_to_4byte_selector("isPositionLiquidatable(uint256)").hex()

    async def is_liq(token: int, block: int) -> bool:
        resp = await w3.provider.make_request(
            "eth_call",  # type: ignore[arg-type]
            [{"to": pm_address, "data": "0x" + selector + f"{token:064x}"}, hex(block)],
        )
        return int(resp["result"], 16) == 1

    sem = asyncio.Semaphore(32)

    async def bounded(token: int, block: int) -> bool:
        async with sem:
            return await is_liq(token, block)

    sweep_s = 0.0
    found = 0
    last = -1
    swept = 0
    try:
        while swept < blocks:
            resp = await w3.provider.make_request("eth_blockNumber", [])  # type: ignore[arg-type]
            block = int(resp["result"], 16)
            if block == last:
                chain.rpc.call("evm_mine")  # the next block (driver, not counted)
                await asyncio.sleep(poll_s)
                continue
            t0 = time.perf_counter()
            flags = await asyncio.gather(*(bounded(t, block) for t in tokens))
            sweep_s += time.perf_counter() - t0
            found = sum(flags)
            last = block
            swept += 1
    finally:
        await w3.provider.disconnect()
    return counter.total / swept, sweep_s / swept, found


def keeper_wallet_state(chain: Chain, address: str, from_block: int) -> dict[str, int]:
    """The keeper's mined and reverted transactions since `from_block`, and the nonce gaps of
    its wallet (read from the node: mined and pending nonces, txpool)."""
    from shared.chain.nonces import holes

    head = chain.block_number()
    me = address.lower()
    hashes: list[str] = []
    numbers = list(range(from_block, head + 1))
    for i in range(0, len(numbers), 200):
        blocks = chain.rpc.batch(
            [("eth_getBlockByNumber", [hex(n), True]) for n in numbers[i : i + 200]]
        )
        for block in blocks:
            hashes += [t["hash"] for t in block["transactions"] if t["from"].lower() == me]
    reverted = 0
    for i in range(0, len(hashes), 500):
        receipts = chain.rpc.batch(
            [("eth_getTransactionReceipt", [h]) for h in hashes[i : i + 500]]
        )
        reverted += sum(1 for r in receipts if int(r["status"], 16) != 1)
    latest = int(chain.rpc.call("eth_getTransactionCount", [address, "latest"]), 16)
    pending = int(chain.rpc.call("eth_getTransactionCount", [address, "pending"]), 16)
    pool = chain.rpc.call("txpool_inspect")
    held = {
        int(n)
        for section in ("pending", "queued")
        for a, txs in (pool.get(section) or {}).items()
        if a.lower() == me
        for n in txs
    }
    return {
        "mined": len(hashes),
        "reverted": reverted,
        "nonce_gaps": len(holes(latest, held)),
        "in_flight": pending - latest,
        "queued": len(held),
    }
