"""Deploy Perp-EX exactly like the Foundry scripts do: by running them.

``deploy_local`` runs ``scripts/forge.sh script script/Deploy.s.sol:Deploy --rpc-url <RPC>
--broadcast`` with the key passed through the environment (never on the command line, never
printed), reads the deployment file the script wrote, checks the contracts have code on the
chain and saves the file to ``out_path``.

``deploy_bridge`` then runs ``script/DeployBridge.s.sol`` over the home chain and a remote one
(the cross-chain collateral bridge, docs/bridge.md) and adds its ``bridge`` section to the
deployment file.
"""

from __future__ import annotations

import json
import os
import subprocess
import urllib.request
import uuid
from collections.abc import Mapping
from pathlib import Path

from pydantic import SecretStr

from shared.chain.abi import CONTRACTS_DIR, FORGE_SH
from shared.chain.deployment import Deployment

DEPLOY_SCRIPT = "script/Deploy.s.sol:Deploy"
BRIDGE_SCRIPT = "script/DeployBridge.s.sol:DeployBridge"


class DeployError(RuntimeError):
    """The deploy script failed or its result is not on the chain."""


def _secret(value: str | SecretStr) -> str:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    raw = raw.strip()
    return raw if raw.startswith("0x") else "0x" + raw


def _scrub(text: str, secret: str) -> str:
    for form in {secret, secret.removeprefix("0x")}:
        if form:
            text = text.replace(form, "***")
    return text


def _rpc(rpc_url: str, method: str, params: list[object], timeout: float = 10.0) -> object:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": method, "params": params}).encode()
    req = urllib.request.Request(rpc_url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        reply = json.loads(resp.read())
    if "error" in reply:
        raise DeployError(f"{method} failed: {reply['error']}")
    return reply["result"]


def deploy_local(
    rpc_url: str,
    private_key: str | SecretStr,
    out_path: str | os.PathLike[str],
    *,
    eth_price: int | None = None,
    btc_price: int | None = None,
    funding_interval: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> Deployment:
    """Deploy everything for ETH/USDT and BTC/USDT to `rpc_url`; returns the Deployment.

    `eth_price` / `btc_price` are whole USDT; `funding_interval` is seconds. `extra_env` passes
    further Deploy.s.sol settings (VAULT_LIQUIDITY, VAMM_QUOTE_DEPTH, ETH_FEED, ...).
    """
    key = _secret(private_key)
    deployments_dir = CONTRACTS_DIR / "deployments"
    deployments_dir.mkdir(parents=True, exist_ok=True)
    scratch = f"deployments/.deploy-{uuid.uuid4().hex}.json"
    env = dict(os.environ)
    env.update(extra_env or {})
    env["PRIVATE_KEY"] = key
    env["DEPLOYMENT_OUT"] = scratch
    if eth_price is not None:
        env["ETH_PRICE"] = str(int(eth_price))
    if btc_price is not None:
        env["BTC_PRICE"] = str(int(btc_price))
    if funding_interval is not None:
        env["FUNDING_INTERVAL"] = str(int(funding_interval))
    cmd = [
        str(FORGE_SH), "script", DEPLOY_SCRIPT, "--rpc-url", rpc_url, "--broadcast",
        *_gas_price_args(rpc_url),
    ]  # fmt: skip
    scratch_path = CONTRACTS_DIR / scratch
    try:
        _run_script(cmd, env, timeout, scratch_path, [key, rpc_url])
        deployment = Deployment.load(scratch_path)
    finally:
        scratch_path.unlink(missing_ok=True)

    _check_deployed(rpc_url, deployment)
    deployment.save(Path(out_path))
    return deployment


def _gas_price_args(rpc_url: str) -> list[str]:
    # forge prices its transactions from the latest block's base fee; the next block may charge
    # more (after a busy block, or a base fee set with anvil_setNextBlockBaseFeePerGas). Offer
    # twice the pending block's base fee plus the tip, as the services' sender does.
    pending = _rpc(rpc_url, "eth_getBlockByNumber", ["pending", False])
    base_fee = (
        int(str(pending.get("baseFeePerGas") or "0x0"), 16) if isinstance(pending, dict) else 0
    )
    tip = 10**9
    return ["--with-gas-price", str(2 * base_fee + tip), "--priority-gas-price", str(tip)]


def _run_script(
    cmd: list[str], env: dict[str, str], timeout: float, out: Path, secrets: list[str]
) -> None:
    try:
        proc = subprocess.run(
            cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
    except subprocess.TimeoutExpired:
        raise DeployError(f"{cmd[3]} timed out after {timeout:.0f}s") from None
    if proc.returncode != 0 or not out.exists():
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
        for secret in secrets:
            tail = _scrub(tail, secret)
        raise DeployError(f"{cmd[3]} failed (exit {proc.returncode}):\n{tail}")


def _has_code(rpc_url: str, address: str) -> bool:
    return _rpc(rpc_url, "eth_getCode", [address, "latest"]) not in ("0x", "0x0", None)


def _check_deployed(rpc_url: str, deployment: Deployment) -> None:
    chain_id = int(str(_rpc(rpc_url, "eth_chainId", [])), 16)
    if chain_id != deployment.chain_id:
        raise DeployError(f"deployed to chain {deployment.chain_id} but RPC reports {chain_id}")
    addresses = list(deployment.contracts.by_name().values()) + [
        m.vamm for m in deployment.markets.values()
    ]
    for address in addresses:
        if not _has_code(rpc_url, address):
            raise DeployError(f"no code at {address} after the deploy script ran")


def deploy_bridge(
    home_rpc_url: str,
    remote_rpc_url: str,
    private_key: str | SecretStr,
    deployment_path: str | os.PathLike[str],
    *,
    relayer: str,
    reserve: int | None = None,
    extra_env: Mapping[str, str] | None = None,
    timeout: float = 600.0,
) -> Deployment:
    """Deploy the cross-chain collateral bridge between the home chain of the deployment at
    `deployment_path` (its Vault, owned by the key) and `remote_rpc_url`, with local LayerZero
    endpoints verified by `relayer`; adds the `bridge` section to the file and returns the
    Deployment. `reserve` is whole home tokens; `extra_env` passes further DeployBridge.s.sol
    settings (REMOTE_TOKEN, HOME_LZ_ENDPOINT, BRIDGE_LZ_RECEIVE_GAS, ...)."""
    from shared.chain.deployment import BridgeDeployment

    key = _secret(private_key)
    home = Deployment.load(deployment_path)
    if home.bridge is not None:
        raise DeployError(f"{deployment_path} already has a bridge (the Vault takes one, once)")
    scratch = f"deployments/.bridge-{uuid.uuid4().hex}.json"
    env = dict(os.environ)
    env.update(extra_env or {})
    env.update(
        PRIVATE_KEY=key,
        HOME_RPC_URL=home_rpc_url,
        REMOTE_RPC_URL=remote_rpc_url,
        VAULT=home.contracts.vault,
        RELAYER=relayer,
        DEPLOY_PROFILE=home.profile,
        BRIDGE_OUT=scratch,
    )
    if reserve is not None:
        env["BRIDGE_RESERVE"] = str(int(reserve))
    # one gas price for both chains: the higher of the two
    prices = [_gas_price_args(url) for url in (home_rpc_url, remote_rpc_url)]
    gas = max(prices, key=lambda args: int(args[1]))
    cmd = [str(FORGE_SH), "script", BRIDGE_SCRIPT, "--broadcast", *gas]
    (CONTRACTS_DIR / "deployments").mkdir(parents=True, exist_ok=True)
    scratch_path = CONTRACTS_DIR / scratch
    try:
        _run_script(cmd, env, timeout, scratch_path, [key, home_rpc_url, remote_rpc_url])
        bridge = BridgeDeployment.model_validate(json.loads(scratch_path.read_text()))
    finally:
        scratch_path.unlink(missing_ok=True)
    for side, url in ((bridge.home, home_rpc_url), (bridge.remote, remote_rpc_url)):
        chain_id = int(str(_rpc(url, "eth_chainId", [])), 16)
        if chain_id != side.chain_id:
            raise DeployError(
                f"bridge end deployed to chain {side.chain_id} but RPC reports {chain_id}"
            )
        for address in (side.endpoint, side.app, side.token):
            if not _has_code(url, address):
                raise DeployError(f"no code at {address} on chain {chain_id} after the script ran")
    deployment = home.model_copy(update={"bridge": bridge})
    deployment = Deployment.model_validate(deployment.to_dict())
    deployment.save(Path(deployment_path))
    if home.governance is not None:
        _wire_governed_bridge(home_rpc_url, key, home, bridge.home.app)
    return deployment


def _wire_governed_bridge(rpc_url: str, key: str, home: Deployment, bridge: str) -> None:
    """Under governance the timelock owns the Vault: Vault.setBridge (and the bridge's
    acceptOwnership) is a proposal. A local anvil chain carries it out at once (moving its
    clock); elsewhere the token holders vote on it (DeployError says which proposal)."""
    from web3 import Web3

    from shared.chain.abi import load_abi
    from shared.chain.client import sync_web3
    from shared.chain.governed import GovernanceActionError, GovernedChanges, is_anvil

    assert home.governance is not None
    w3 = sync_web3(rpc_url)
    vault = w3.eth.contract(address=home.contracts.vault, abi=load_abi("Vault"))
    if vault.functions.bridge().call().lower() == bridge.lower():
        return
    app = w3.eth.contract(
        address=Web3.to_checksum_address(bridge), abi=load_abi("CollateralBridge")
    )
    calls = [
        (vault.address, bytes.fromhex(vault.encode_abi("setBridge", args=[bridge])[2:])),
        (app.address, bytes.fromhex(app.encode_abi("acceptOwnership", args=[])[2:])),
    ]
    gov = GovernedChanges(w3, home.governance, key)
    try:
        proposal = gov.propose_calls(calls, f"Wire the cross-chain collateral bridge {bridge}")
        if not is_anvil(w3):
            raise DeployError(
                f"the bridge is deployed; wiring it into the Vault is proposal "
                f"{proposal.proposal_id}: perpex gov vote|queue|execute {proposal.proposal_id}"
            )
        gov.carry_out(proposal)
    except GovernanceActionError as exc:
        raise DeployError(
            f"wiring the bridge through governance: {_scrub(str(exc), key)}"
        ) from None
