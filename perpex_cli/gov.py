"""`perpex gov propose|vote|queue|execute|status`: protocol changes through the PEX Governor.

    perpex gov propose "set ETH/USDT maxLeverage 15"
    perpex gov vote <proposal id> for|against|abstain
    perpex gov queue <proposal id>        # after the vote succeeded
    perpex gov execute <proposal id>      # after the timelock's delay
    perpex gov status [<proposal id>]     # state, votes, quorum, time left (--json)

The key comes from an environment variable (GOV_PRIVATE_KEY, else PRIVATE_KEY), never a flag;
the deployment file (DEPLOYMENT_FILE) names the Governor, the timelock and the protocol. A
change is built from readable text (shared/governance.py): grouped setters keep the market's
other values as the chain has them now. Exit codes: 0 done, 1 a failure (one line), 2 bad input.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from typing import Any

import click
from eth_account import Account
from web3 import Web3
from web3.logs import DISCARD

from shared.chain.abi import load_abi
from shared.chain.client import sync_web3
from shared.chain.deployment import Deployment
from shared.chain.errors import ErrorDecoder
from shared.governance import ChangeError, MarketParams, PlannedCall, parse_change, plan_call

STATES = (
    "Pending",
    "Active",
    "Canceled",
    "Defeated",
    "Succeeded",
    "Queued",
    "Expired",
    "Executed",
)
SUPPORT = {"against": 0, "for": 1, "abstain": 2}


class BadInput(click.ClickException):
    exit_code = 2


@dataclass
class Gov:
    w3: Web3
    deployment: Deployment
    governor: Any
    pm: Any
    vault: Any
    decoder: ErrorDecoder

    @classmethod
    def connect(cls, rpc_url: str, deployment_file: str) -> Gov:
        try:
            dep = Deployment.load(deployment_file)
        except (OSError, ValueError) as exc:
            raise BadInput(f"cannot read the deployment file {deployment_file}: {exc}") from None
        if dep.governance is None:
            raise BadInput(
                f"{deployment_file} has no governance section: this deployment is owned by its "
                "deployer (deploy with GOVERNANCE=1)"
            )
        w3 = sync_web3(rpc_url)
        c = dep.contracts
        abis = [
            load_abi(n)
            for n in (
                "PerpExGovernor",
                "PositionManager",
                "Vault",
                "VirtualAMM",
                "TimelockController",
            )
        ]
        return cls(
            w3,
            dep,
            w3.eth.contract(address=dep.governance.governor, abi=abis[0]),
            w3.eth.contract(address=c.position_manager, abi=abis[1]),
            w3.eth.contract(address=c.vault, abi=abis[2]),
            ErrorDecoder(abis),
        )

    # ---- building a change ----
    def market_params(self, pair: str) -> tuple[bytes, MarketParams]:
        if pair not in self.deployment.markets:
            known = ", ".join(sorted(self.deployment.markets))
            raise BadInput(f"unknown market {pair!r}; markets: {known}")
        mid = self.deployment.market(pair).market_id_bytes
        cfg = self.pm.functions.getMarket(mid).call()
        vamm = self.w3.eth.contract(address=cfg[0], abi=load_abi("VirtualAMM"))
        return mid, MarketParams(
            maxLeverage=cfg[2],
            maintenanceMarginRatio=cfg[3],
            liquidationFeeRatio=cfg[4],
            fundingInterval=cfg[5],
            maxFundingRate=cfg[6],
            minNotional=cfg[8],
            liquidationRewardShare=cfg[9],
            maxSpread=cfg[10],
            feeRatio=vamm.functions.feeRatio().call(),
            maxPriceImpact=vamm.functions.maxPriceImpact().call(),
            maxPriceMovePerBlock=vamm.functions.maxPriceMovePerBlock().call(),
        )

    def encode(self, call: PlannedCall) -> tuple[str, bytes]:
        if call.contract == "pm":
            target = self.pm
        elif call.contract == "vault":
            target = self.vault
        else:
            assert call.pair is not None
            target = self.w3.eth.contract(
                address=self.deployment.market(call.pair).vamm, abi=load_abi("VirtualAMM")
            )
        data = target.encode_abi(call.function, args=list(call.args))
        return target.address, bytes.fromhex(data[2:])

    # ---- proposals ----
    def created(self) -> dict[int, dict[str, Any]]:
        """Every ProposalCreated of this Governor, by proposal id."""
        event = self.governor.events.ProposalCreated()
        logs = self.w3.eth.get_logs(
            {
                "address": self.governor.address,
                "topics": [event.topic],
                "fromBlock": self.deployment.start_block,
                "toBlock": "latest",
            }
        )
        out = {}
        for log in logs:
            args = event.process_log(log)["args"]
            out[int(args["proposalId"])] = dict(args)
        return out

    def proposal(self, proposal_id: int) -> dict[str, Any]:
        p = self.created().get(proposal_id)
        if p is None:
            raise BadInput(f"no proposal {proposal_id} on this Governor")
        return p

    def status(self, proposal_id: int, p: dict[str, Any]) -> dict[str, Any]:
        fns = self.governor.functions
        state = STATES[fns.state(proposal_id).call()]
        against, for_, abstain = fns.proposalVotes(proposal_id).call()
        snapshot = fns.proposalSnapshot(proposal_id).call()
        deadline = fns.proposalDeadline(proposal_id).call()
        eta = fns.proposalEta(proposal_id).call()
        now = self.w3.eth.get_block("latest")["timestamp"]
        quorum = fns.quorum(snapshot).call() if snapshot < now else None
        left: tuple[str | None, int]
        if state == "Pending":
            left = ("voting starts", snapshot - now)
        elif state == "Active":
            left = ("voting ends", deadline - now)
        elif state == "Queued":
            left = ("executable", eta - now)
        else:
            left = (None, 0)
        return {
            "proposal_id": str(proposal_id),
            "description": p["description"],
            "state": state,
            "votes": {"for": str(for_), "against": str(against), "abstain": str(abstain)},
            "quorum": None if quorum is None else str(quorum),
            "vote_start": snapshot,
            "vote_end": deadline,
            "eta": eta or None,
            "next": left[0],
            "seconds_left": max(0, left[1]),
            "chain_time": now,
        }

    # ---- sending ----
    def send(self, fn: Any, key: str) -> dict[str, Any]:
        acct = Account.from_key(key)
        try:
            tx = fn.build_transaction(
                {"from": acct.address, "nonce": self.w3.eth.get_transaction_count(acct.address)}
            )
        except Exception as exc:  # a revert in estimation: name the contract's error
            raise click.ClickException(f"refused: {self.decoder.describe(exc)}") from None
        signed = acct.sign_transaction(tx)
        tx_hash = self.w3.eth.send_raw_transaction(signed.raw_transaction)
        receipt = self.w3.eth.wait_for_transaction_receipt(tx_hash, timeout=120)
        if receipt["status"] != 1:
            raise click.ClickException(f"transaction {tx_hash.hex()} reverted")
        return dict(receipt)


def _key() -> str:
    for name in ("GOV_PRIVATE_KEY", "PRIVATE_KEY"):
        value = os.environ.get(name, "").strip()
        if value:
            return value
    raise BadInput("set the voter's private key in $GOV_PRIVATE_KEY (or $PRIVATE_KEY)")


def _emit(as_json: bool, data: dict[str, Any], text: str) -> None:
    click.echo(json.dumps(data) if as_json else text)


def _proposal_id(raw: str) -> int:
    try:
        return int(raw, 0)
    except ValueError:
        raise BadInput(f"{raw!r} is not a proposal id") from None


rpc_option = click.option(
    "--rpc-url",
    default=lambda: os.environ.get("RPC_URL", "http://127.0.0.1:8545"),
    show_default="$RPC_URL or http://127.0.0.1:8545",
)
deployment_option = click.option(
    "--deployment",
    "deployment_file",
    default=lambda: os.environ.get("DEPLOYMENT_FILE", ".perpex/deployment.json"),
    show_default="$DEPLOYMENT_FILE or .perpex/deployment.json",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Print one JSON object.")


@click.group(name="gov")
def gov() -> None:
    """Propose, vote on, queue and execute protocol changes through the PEX Governor."""


@gov.command()
@click.argument("change")
@click.option("--description", default=None, help="Proposal text (default: the change).")
@rpc_option
@deployment_option
@json_option
def propose(
    change: str, description: str | None, rpc_url: str, deployment_file: str, as_json: bool
) -> None:
    """Propose CHANGE, e.g. "set ETH/USDT maxLeverage 15", "pause BTC/USDT",
    "set fundingReward 2"."""
    try:
        parsed = parse_change(change)
    except ChangeError as exc:
        raise BadInput(str(exc)) from None
    key = _key()
    g = Gov.connect(rpc_url, deployment_file)
    mid, current = (None, None)
    if parsed.pair is not None:
        mid, current = g.market_params(parsed.pair)
    try:
        call = plan_call(parsed, mid, current)
    except ChangeError as exc:
        raise BadInput(str(exc)) from None
    target, data = g.encode(call)
    text = description or change
    receipt = g.send(g.governor.functions.propose([target], [0], [data], text), key)
    logs = g.governor.events.ProposalCreated().process_receipt(receipt, errors=DISCARD)
    pid = int(logs[0]["args"]["proposalId"])
    _emit(
        as_json,
        {"proposal_id": str(pid), "target": target, "function": call.function, "description": text},
        f"proposal {pid}: {text} ({call.function} on {target})",
    )


@gov.command()
@click.argument("proposal_id")
@click.argument("support", type=click.Choice(sorted(SUPPORT)))
@rpc_option
@deployment_option
@json_option
def vote(proposal_id: str, support: str, rpc_url: str, deployment_file: str, as_json: bool) -> None:
    """Vote on a proposal with the key's voting power."""
    pid = _proposal_id(proposal_id)
    key = _key()
    g = Gov.connect(rpc_url, deployment_file)
    g.proposal(pid)
    g.send(g.governor.functions.castVote(pid, SUPPORT[support]), key)
    _emit(as_json, {"proposal_id": str(pid), "support": support}, f"voted {support} on {pid}")


def _lifecycle(
    action: str, proposal_id: str, rpc_url: str, deployment_file: str
) -> tuple[int, str]:
    pid = _proposal_id(proposal_id)
    key = _key()
    g = Gov.connect(rpc_url, deployment_file)
    p = g.proposal(pid)
    fn = getattr(g.governor.functions, action)
    desc_hash = Web3.keccak(text=p["description"])
    g.send(fn(list(p["targets"]), list(p["values"]), list(p["calldatas"]), desc_hash), key)
    return pid, STATES[g.governor.functions.state(pid).call()]


@gov.command()
@click.argument("proposal_id")
@rpc_option
@deployment_option
@json_option
def queue(proposal_id: str, rpc_url: str, deployment_file: str, as_json: bool) -> None:
    """Queue a succeeded proposal in the timelock."""
    pid, state = _lifecycle("queue", proposal_id, rpc_url, deployment_file)
    _emit(as_json, {"proposal_id": str(pid), "state": state}, f"proposal {pid}: {state}")


@gov.command()
@click.argument("proposal_id")
@rpc_option
@deployment_option
@json_option
def execute(proposal_id: str, rpc_url: str, deployment_file: str, as_json: bool) -> None:
    """Execute a queued proposal once the timelock's delay has passed."""
    pid, state = _lifecycle("execute", proposal_id, rpc_url, deployment_file)
    _emit(as_json, {"proposal_id": str(pid), "state": state}, f"proposal {pid}: {state}")


@gov.command()
@click.argument("proposal_id", required=False)
@rpc_option
@deployment_option
@json_option
def status(proposal_id: str | None, rpc_url: str, deployment_file: str, as_json: bool) -> None:
    """A proposal's state, votes, quorum and time left (all proposals without an id)."""
    g = Gov.connect(rpc_url, deployment_file)
    if proposal_id is not None:
        pid = _proposal_id(proposal_id)
        rows = [g.status(pid, g.proposal(pid))]
    else:
        created = sorted(g.created().items(), key=lambda x: int(x[1]["voteStart"]))
        rows = [g.status(pid, p) for pid, p in created]
    if as_json:
        click.echo(json.dumps({"proposals": rows}))
        return
    if not rows:
        click.echo("no proposals")
    for r in rows:
        left = f", {r['next']} in {r['seconds_left']}s" if r["next"] else ""
        votes = {k: int(v) / 1e18 for k, v in r["votes"].items()}
        quorum = "" if r["quorum"] is None else f", quorum {int(r['quorum']) / 1e18:g}"
        click.echo(
            f"{r['proposal_id']}  {r['state']:9}  {r['description']}  "
            f"(for {votes['for']:g}, against {votes['against']:g}, "
            f"abstain {votes['abstain']:g}{quorum}){left}"
        )
