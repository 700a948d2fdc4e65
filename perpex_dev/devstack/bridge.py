"""Drive the cross-chain collateral bridge on local chains like a trader would (docs/bridge.md):
faucet the remote chain's token, deposit it for free collateral on the home chain, withdraw
free collateral back to the remote chain, and read both ends. anvil's unlocked accounts sign.

Used by the demo and the tests; `perpex relayer` carries the messages in between.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from web3 import Web3
from web3.contract import Contract
from web3.logs import DISCARD

from shared.chain.abi import load_abi
from shared.chain.deployment import BridgeDeployment, Deployment


@dataclass(frozen=True)
class Sent:
    guid: str  # 0x-hex
    nonce: int
    tx_hash: str
    block_number: int


class LocalBridge:
    def __init__(self, home: Web3, remote: Web3, deployment: Deployment):
        if deployment.bridge is None:
            raise ValueError("the deployment has no bridge (perpex deploy --remote-rpc-url)")
        self.home = home
        self.remote = remote
        self.b: BridgeDeployment = deployment.bridge
        self.vault = _at(home, deployment.contracts.vault, "Vault")
        self.bridge = _at(home, self.b.home.app, "CollateralBridge")
        self.home_endpoint = _at(home, self.b.home.endpoint, "EndpointV2")
        self.depositor = _at(remote, self.b.remote.app, "CollateralDepositor")
        self.token = _at(remote, self.b.remote.token, "CollateralToken")
        self.remote_endpoint = _at(remote, self.b.remote.endpoint, "EndpointV2")

    # ---- traders ----
    def deposit(self, trader: str, amount: int, account: str | None = None) -> Sent:
        """Faucet `amount` remote tokens to `trader`, lock them and send the credit of
        `account` (default the trader) to the home chain."""
        account = account or trader
        _send(self.remote, self.token.functions.faucetTo(trader, amount), trader)
        _send(self.remote, self.token.functions.approve(self.depositor.address, amount), trader)
        fee = self.depositor.functions.quoteDeposit(amount, account, b"").call()[0]
        receipt = _send(
            self.remote, self.depositor.functions.deposit(amount, account, b""), trader, fee
        )
        event = self.depositor.events.DepositSent().process_receipt(receipt, errors=DISCARD)[0]
        return _sent(event, receipt)

    def withdraw(self, trader: str, amount: int, recipient: str | None = None) -> Sent:
        """Send `amount` (WAD) of the trader's free collateral to `recipient` on the remote."""
        recipient = recipient or trader
        eid = self.b.remote.eid
        fee = self.bridge.functions.quoteWithdraw(eid, recipient, amount, b"").call()[0]
        receipt = _send(
            self.home, self.bridge.functions.withdrawTo(eid, recipient, amount, b""), trader, fee
        )
        event = self.bridge.events.WithdrawalSent().process_receipt(receipt, errors=DISCARD)[0]
        return _sent(event, receipt)

    # ---- reads ----
    def free_collateral(self, account: str) -> int:
        return int(self.vault.functions.freeCollateral(account).call())

    def remote_balance(self, account: str) -> int:
        return int(self.token.functions.balanceOf(account).call())

    def credited(self, guid: str) -> bool:
        """Whether the home bridge credited the deposit `guid` (its DepositCredited event)."""
        return bool(self._events(self.bridge.events.DepositCredited, self.b.home, guid))

    def released(self, guid: str) -> bool:
        ev = self.depositor.events
        return bool(
            self._events(ev.Released, self.b.remote, guid)
            or self._events(ev.ReleaseDeferred, self.b.remote, guid)
        )

    def deliveries(self, guid: str) -> int:
        """How many times `guid` was applied on its destination (credits plus releases)."""
        ev = self.depositor.events
        return (
            len(self._events(self.bridge.events.DepositCredited, self.b.home, guid))
            + len(self._events(ev.Released, self.b.remote, guid))
            + len(self._events(ev.ReleaseDeferred, self.b.remote, guid))
        )

    def _events(self, event: Any, side: Any, guid: str) -> list[Any]:
        return list(event().get_logs(from_block=side.start_block, argument_filters={"guid": guid}))


def _at(w3: Web3, address: str, name: str) -> Contract:
    return w3.eth.contract(address=Web3.to_checksum_address(address), abi=load_abi(name))


def _send(w3: Web3, fn: Any, sender: str, value: int = 0) -> Any:
    tx_hash = fn.transact({"from": sender, "value": value})
    receipt = w3.eth.wait_for_transaction_receipt(tx_hash, timeout=60)
    if receipt["status"] != 1:
        raise RuntimeError(f"transaction {tx_hash.hex()} reverted")
    return receipt


def _sent(event: Any, receipt: Any) -> Sent:
    return Sent(
        guid="0x" + bytes(event["args"]["guid"]).hex(),
        nonce=int(event["args"]["nonce"]),
        tx_hash=receipt["transactionHash"].to_0x_hex(),
        block_number=int(receipt["blockNumber"]),
    )
