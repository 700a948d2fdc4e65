"""Drive a local Perp-EX deployment like traders and an oracle operator would: fund wallets
from the vUSDT faucet, open and close positions, move oracle prices, advance chain time.

For local chains (anvil's unlocked accounts sign); used by the demo, benchmarks and tests.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.contract import Contract

from shared.chain.abi import load_abi
from shared.chain.deployment import Deployment

WAD = 10**18


@dataclass
class OpenedPosition:
    token_id: int
    owner: str
    pair: str
    is_long: bool
    collateral: int
    leverage: int
    tx_hash: str


class LocalMarket:
    def __init__(self, w3: Web3, deployment: Deployment):
        self.w3 = w3
        self.d = deployment
        c = deployment.contracts
        self.pm = self._at(c.position_manager, "PositionManager")
        self.vault = self._at(c.vault, "Vault")
        self.token = self._at(c.collateral_token, "CollateralToken")
        self.nft = self._at(c.position_nft, "PositionNFT")

    def _at(self, address: str, name: str) -> Contract:
        return self.w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_abi(name))

    # ---- plumbing ----
    def rpc(self, method: str, params: list[Any]) -> Any:
        resp = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        if "error" in resp:
            raise RuntimeError(f"{method}: {resp['error']}")
        return resp.get("result")

    def _transact(self, fn: Any, sender: str) -> Any:
        tx_hash = fn.transact({"from": sender})
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
        if receipt["status"] != 1:
            raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
        return receipt

    def feed(self, pair: str) -> Contract:
        return self._at(self.d.market(pair).oracle_feed, "SettableFeed")

    # ---- traders ----
    def fund(self, trader: str, amount: int) -> None:
        """Faucet `amount` vUSDT (WAD) to `trader` and deposit it as free collateral."""
        self._transact(self.token.functions.faucetTo(trader, amount), trader)
        self._transact(self.token.functions.approve(self.vault.address, amount), trader)
        self._transact(self.vault.functions.deposit(amount), trader)

    def open(
        self, trader: str, pair: str, is_long: bool, collateral: int, leverage: int
    ) -> OpenedPosition:
        """Open a position: collateral in WAD, leverage in WAD (5 * WAD = 5x); no slippage bound."""
        limit = 2**256 - 1 if is_long else 0
        market_id = self.d.market(pair).market_id_bytes
        receipt = self._transact(
            self.pm.functions.openPosition(market_id, is_long, collateral, leverage, limit), trader
        )
        logs = [log for log in receipt["logs"] if log["address"] == self.pm.address]
        event = self.pm.events.PositionOpened().process_log(logs[-1])
        return OpenedPosition(
            int(event["args"]["tokenId"]),
            trader,
            pair,
            is_long,
            collateral,
            leverage,
            receipt["transactionHash"].to_0x_hex(),
        )

    def close(self, trader: str, token_id: int, is_long: bool) -> Any:
        limit = 0 if is_long else 2**256 - 1
        return self._transact(self.pm.functions.closePosition(token_id, limit), trader)

    def is_liquidatable(self, token_id: int) -> bool:
        return bool(self.pm.functions.isPositionLiquidatable(token_id).call())

    def exists(self, token_id: int) -> bool:
        return bool(self.pm.functions.getPositionsHealth([token_id]).call()[0][1])

    # ---- oracle and time ----
    def price(self, pair: str) -> int:
        """The feed's answer, in the feed's decimals."""
        return int(self.feed(pair).functions.latestAnswer().call())

    def set_price(self, pair: str, answer: int) -> None:
        """Set the oracle answer (feed decimals) now, as the deployer."""
        self._transact(self.feed(pair).functions.setPrice(answer), self.d.deployer)

    def refresh_prices(self) -> None:
        """Re-post every feed's current answer so it is fresh at the current chain time."""
        for pair in self.d.pairs:
            self.set_price(pair, self.price(pair))

    def advance_time(self, seconds: int) -> int:
        self.rpc("evm_increaseTime", [seconds])
        self.rpc("evm_mine", [])
        return int(self.w3.eth.get_block("latest")["timestamp"])
