"""`perpex bench gas`: gas of the protocol's hot paths, measured from real transaction receipts
(gasUsed: intrinsic 21,000 + calldata + execution - refunds) on a fresh anvil.

Starts its own anvil from node_modules on a free 127.0.0.1 port, deploys with
contracts/script/Deploy.s.sol, runs each function in the scenarios below, prints a table and,
as its LAST line, one JSON object with the worst case of each function:
{"openPosition": N, "closePosition": N, "liquidatePosition": N, "updateFundingRate": N}
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

import click
from web3 import Web3
from web3.logs import DISCARD

from perpex_dev.anvil import DEV_KEYS, run_anvil
from shared.chain.abi import load_abi
from shared.chain.deploy import deploy_local
from shared.chain.deployment import Deployment

WAD = 10**18
TARGETS = {
    "openPosition": 275_000,
    "closePosition": None,
    "liquidatePosition": 220_000,
    "updateFundingRate": 90_000,
    # what paying updateFundingRate's caller adds (issue 17's permissionless keeping): a call into
    # the Vault and three ledger writes (insurance, the caller's balance, total free); a caller's
    # first reward writes a zero balance slot (+20,000)
    "fundingReward": 26_000,
}
FIRST_REWARD_EXTRA = 20_000
# updateFundingRate's target holds for a window of up to two feed rounds; the index TWAP reads
# every further round of the feed in the window, about 3,100 gas each (docs/gas.md)
FUNDING_BASE_ROUNDS, FUNDING_PER_ROUND = 2, 3_500
FUNDING_ROUNDS = {"one feed round": 1, "two feed rounds": 2, "9 rounds": 9}


class _Chain:
    def __init__(self, w3: Web3, dep: Deployment):
        self.w3 = w3
        self.dep = dep
        c = dep.contracts
        self.pm = w3.eth.contract(address=c.position_manager, abi=load_abi("PositionManager"))
        self.vault = w3.eth.contract(address=c.vault, abi=load_abi("Vault"))
        self.token = w3.eth.contract(address=c.collateral_token, abi=load_abi("CollateralToken"))
        self.feed_abi = load_abi("SettableFeed")

    def send(self, fn: Any, sender: str) -> dict[str, Any]:
        tx_hash = fn.transact({"from": sender})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash)
        if receipt["status"] != 1:
            raise click.ClickException(f"transaction {fn.fn_name} reverted")
        return dict(receipt)

    def fund(self, trader: str, amount: int) -> None:
        self.send(self.token.functions.faucet(amount), trader)
        self.send(self.token.functions.approve(self.vault.address, amount), trader)
        self.send(self.vault.functions.deposit(amount), trader)

    def open(self, trader: str, pair: str, is_long: bool, collateral: int, lev: int) -> tuple:
        mid = self.dep.market(pair).market_id_bytes
        r = self.send(
            self.pm.functions.openPosition(mid, is_long, collateral, lev * WAD, 0), trader
        )
        ev = self.pm.events.PositionOpened().process_receipt(r, errors=DISCARD)[0]
        return ev["args"]["tokenId"], r["gasUsed"]

    def set_price(self, pair: str, price: int) -> None:
        m = self.dep.market(pair)
        feed = self.w3.eth.contract(address=m.oracle_feed, abi=self.feed_abi)
        self.send(feed.functions.setPrice(price * 10**m.feed_decimals), self.dep.deployer)

    def as_owner(self, fn: Any) -> None:
        """Send `fn` from the PositionManager's owner (the timelock under governance: this
        bench's own anvil lets it act as that account)."""
        owner = self.pm.functions.owner().call()
        rpc = self.w3.provider.make_request
        rpc("anvil_impersonateAccount", [owner])  # type: ignore[arg-type]
        rpc("anvil_setBalance", [owner, hex(10**18)])  # type: ignore[arg-type]
        try:
            self.send(fn, owner)
        finally:
            rpc("anvil_stopImpersonatingAccount", [owner])  # type: ignore[arg-type]

    def funding_update(self, market_id: bytes, caller: str) -> tuple[int, int]:
        """(gas without the caller's reward, gas with it): the same update measured twice from
        one EVM snapshot, once with fundingReward set to 0."""
        rpc = self.w3.provider.make_request
        snap = rpc("evm_snapshot", [])["result"]  # type: ignore[arg-type]
        self.as_owner(self.pm.functions.setFundingReward(0))
        bare = self.send(self.pm.functions.updateFundingRate(market_id), caller)["gasUsed"]
        rpc("evm_revert", [snap])  # type: ignore[arg-type]
        paid = self.send(self.pm.functions.updateFundingRate(market_id), caller)["gasUsed"]
        return bare, paid

    def warp(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


def measure(rpc_url: str) -> dict[str, list[tuple[str, int]]]:
    w3 = Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 60}))
    accounts = [w3.eth.account.from_key(k).address for k in DEV_KEYS[:5]]
    deployer, keeper, keeper2, trader1, trader2 = accounts
    with tempfile.TemporaryDirectory() as tmp:
        dep = deploy_local(rpc_url, DEV_KEYS[0], Path(tmp) / "deployment.json")
    ch = _Chain(w3, dep)
    out: dict[str, list[tuple[str, int]]] = {k: [] for k in TARGETS}
    for t in (trader1, trader2):
        ch.fund(t, 100_000 * WAD)
    step = 13  # seconds before each measured transaction, so every accumulator is written

    ch.warp(step)
    tid, gas = ch.open(trader1, "ETH/USDT", True, 1_000 * WAD, 5)
    out["openPosition"].append(("first position on a fresh deployment, long ETH", gas))
    ch.warp(step)
    tid_b, gas = ch.open(trader2, "BTC/USDT", False, 1_000 * WAD, 2)
    out["openPosition"].append(("trader's first position (NFT balance 0 -> 1), short BTC", gas))
    ch.warp(step)
    tid2, gas = ch.open(trader1, "ETH/USDT", False, 500 * WAD, 3)
    out["openPosition"].append(("trader already holds a position, short ETH", gas))
    ch.warp(step)
    r = ch.send(ch.pm.functions.closePosition(tid, 0), trader1)
    out["closePosition"].append(("close long", r["gasUsed"]))
    ch.warp(step)
    r = ch.send(ch.pm.functions.closePosition(tid2, 0), trader1)
    out["closePosition"].append(("close short (last position: NFT balance 1 -> 0)", r["gasUsed"]))

    # funding: one interval later (8 h by default); the index TWAP reads the feed's rounds in
    # the window (one for ETH, two for BTC, whose feed moved once)
    ch.warp(dep.funding_interval)

    def funding(market_id: bytes, label: str, reward_label: str) -> None:
        bare, paid = ch.funding_update(market_id, deployer)
        out["updateFundingRate"].append((label, bare))
        out["fundingReward"].append((reward_label, paid - bare))

    eth = dep.market("ETH/USDT").market_id_bytes
    funding(
        eth,
        "ETH/USDT, one feed round in the window",
        "caller's first reward (free balance 0 -> n)",
    )
    ch.set_price("BTC/USDT", int(dep.market("BTC/USDT").initial_price) * 101 // 100)
    btc = dep.market("BTC/USDT").market_id_bytes
    funding(btc, "BTC/USDT, two feed rounds in the window", "caller already holds rewards")
    # an hourly heartbeat (Chainlink's ETH/USD): 8 rounds in the 8 h window, a 9th before it
    eth_price = int(dep.market("ETH/USDT").initial_price)
    for _ in range(8):
        ch.warp(dep.funding_interval // 8)
        ch.set_price("ETH/USDT", eth_price)
    funding(
        eth,
        "ETH/USDT, hourly feed: 9 rounds read for the index TWAP",
        "caller already holds rewards (9-round update)",
    )

    # liquidation: 10x / 20x longs, then the oracle price falls 15%
    ta, _ = ch.open(trader1, "ETH/USDT", True, 1_000 * WAD, 10)
    tb, _ = ch.open(trader2, "ETH/USDT", True, 1_000 * WAD, 10)
    tc, _ = ch.open(trader1, "ETH/USDT", True, 200 * WAD, 20)
    ch.set_price("ETH/USDT", int(dep.market("ETH/USDT").initial_price) * 85 // 100)
    ch.warp(step)
    r = ch.send(ch.pm.functions.liquidatePosition(ta), keeper)
    out["liquidatePosition"].append(("keeper's first reward (free balance 0 -> n)", r["gasUsed"]))
    ch.warp(step)
    r = ch.send(ch.pm.functions.liquidatePosition(tb), keeper)
    out["liquidatePosition"].append(("keeper already holds rewards", r["gasUsed"]))
    ch.warp(step)
    r = ch.send(ch.pm.functions.liquidatePosition(tc), keeper2)
    out["liquidatePosition"].append(("bankrupt position: shortfall to insurance", r["gasUsed"]))
    ch.warp(step)
    r = ch.send(ch.pm.functions.closePosition(tid_b, 0), trader2)
    out["closePosition"].append(("close short BTC", r["gasUsed"]))
    return out


def _funding_limit(label: str) -> int:
    rounds = next((n for key, n in FUNDING_ROUNDS.items() if key in label), FUNDING_BASE_ROUNDS)
    extra = max(0, rounds - FUNDING_BASE_ROUNDS)
    return int(TARGETS["updateFundingRate"] or 0) + FUNDING_PER_ROUND * extra


def _reward_limit(label: str) -> int:
    extra = FIRST_REWARD_EXTRA if "first reward" in label else 0
    return int(TARGETS["fundingReward"] or 0) + extra


@click.command(name="gas")
def gas() -> None:
    """Measure gas of openPosition, closePosition, liquidatePosition and updateFundingRate."""
    with run_anvil() as anvil:
        results = measure(anvil.url)
    summary: dict[str, int] = {}
    click.echo("gas from anvil receipts (gasUsed, including the 21,000 intrinsic gas)")
    for fn, rows in results.items():
        worst = max(g for _, g in rows)
        summary[fn] = worst
        target = TARGETS[fn]
        if fn == "updateFundingRate":
            ok = all(g <= _funding_limit(label) for label, g in rows)
            limit = (
                f" (target <= {target:,} with up to {FUNDING_BASE_ROUNDS} feed rounds in the "
                f"window, + {FUNDING_PER_ROUND:,} per further round; without the caller's reward)"
            )
            verdict = " OK" if ok else " OVER TARGET"
        elif fn == "fundingReward":
            ok = all(g <= _reward_limit(label) for label, g in rows)
            limit = (
                f" (paying updateFundingRate's caller: target <= {target:,}, "
                f"+ {FIRST_REWARD_EXTRA:,} for a caller's first reward)"
            )
            verdict = " OK" if ok else " OVER TARGET"
        else:
            verdict = "" if target is None else (" OK" if worst <= target else " OVER TARGET")
            limit = "" if target is None else f" (target <= {target:,})"
        click.echo(f"{fn}: worst {worst:,}{limit}{verdict}")
        for label, g in rows:
            click.echo(f"    {g:>9,}  {label}")
    click.echo(json.dumps(summary))
