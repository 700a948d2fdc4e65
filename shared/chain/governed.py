"""Changes to a governed deployment made from code (the deploy flows), through the Governor.

Under governance the TimelockController owns the Vault, so wiring the cross-chain bridge into
it (`Vault.setBridge`, which lets the bridge move traders' free collateral) is a proposal like
any other change. `propose_calls` files it with the deployer's key; on a local anvil chain
`carry_out` then votes with the deployer's (dev) voting power, moves the chain's clock past the
voting period and the timelock's delay, queues and executes it. On any other chain the proposal
is left for the token holders: `perpex gov vote|queue|execute <id>` (docs/governance.md).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from eth_account import Account
from web3 import Web3
from web3.logs import DISCARD

from shared.chain.abi import load_abi
from shared.chain.deployment import GovernanceAddresses

FOR = 1
EXECUTED = 7  # IGovernor.ProposalState.Executed


class GovernanceActionError(RuntimeError):
    """A proposal could not be filed or carried out; the message says at which step."""


@dataclass(frozen=True)
class Proposal:
    proposal_id: int
    targets: tuple[str, ...]
    calldatas: tuple[bytes, ...]
    description: str


def is_anvil(w3: Web3) -> bool:
    try:
        return str(w3.client_version).lower().startswith("anvil")
    except Exception:
        return False


class GovernedChanges:
    def __init__(self, w3: Web3, governance: GovernanceAddresses, private_key: str):
        self.w3 = w3
        self.account = Account.from_key(private_key)
        self.governor = w3.eth.contract(address=governance.governor, abi=load_abi("PerpExGovernor"))
        self.timelock = w3.eth.contract(
            address=governance.timelock, abi=load_abi("TimelockController")
        )

    def _send(self, step: str, fn: object) -> dict:
        try:
            tx = fn.build_transaction(  # type: ignore[attr-defined]
                {
                    "from": self.account.address,
                    "nonce": self.w3.eth.get_transaction_count(self.account.address, "pending"),
                }
            )
            signed = self.account.sign_transaction(tx)
            tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
            receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        except Exception as exc:
            raise GovernanceActionError(f"{step}: {type(exc).__name__}: {exc}") from None
        if receipt["status"] != 1:
            raise GovernanceActionError(f"{step}: transaction {tx_hash.hex()} reverted")
        return dict(receipt)

    def propose_calls(self, calls: Sequence[tuple[str, bytes]], description: str) -> Proposal:
        targets = [Web3.to_checksum_address(t) for t, _ in calls]
        datas = [d for _, d in calls]
        fn = self.governor.functions.propose(targets, [0] * len(calls), datas, description)
        receipt = self._send("propose", fn)
        logs = self.governor.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
        if not logs:
            raise GovernanceActionError("propose: no ProposalCreated in the receipt")
        return Proposal(
            int(logs[0]["args"]["proposalId"]), tuple(targets), tuple(datas), description
        )

    def _warp(self, seconds: int) -> None:
        self.w3.provider.make_request("evm_increaseTime", [int(seconds)])  # type: ignore[arg-type]
        self.w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def carry_out(self, p: Proposal) -> None:
        """Vote, queue and execute `p` on a local anvil chain (the clock is moved forward)."""
        if not is_anvil(self.w3):
            raise GovernanceActionError("carry_out moves the clock: only on a local anvil chain")
        g = self.governor.functions
        self._warp(g.votingDelay().call() + 1)
        self._send("vote", g.castVote(p.proposal_id, FOR))
        self._warp(g.votingPeriod().call() + 1)
        desc_hash = Web3.keccak(text=p.description)
        args = (list(p.targets), [0] * len(p.targets), list(p.calldatas), desc_hash)
        self._send("queue", g.queue(*args))
        self._warp(self.timelock.functions.getMinDelay().call() + 1)
        self._send("execute", g.execute(*args))
        state = g.state(p.proposal_id).call()
        if state != EXECUTED:
            raise GovernanceActionError(f"proposal {p.proposal_id} ended in state {state}")
