"""Deploy Perp-EX exactly like the Foundry script does: by running it.

``deploy_local`` runs ``scripts/forge.sh script script/Deploy.s.sol:Deploy --rpc-url <RPC>
--broadcast`` with the key passed through the environment (never on the command line, never
printed), reads the deployment file the script wrote, checks the contracts have code on the
chain and saves the file to ``out_path``.
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
    # forge prices its transactions from the latest block's base fee; the next block may charge
    # more (after a busy block, or a base fee set with anvil_setNextBlockBaseFeePerGas). Offer
    # twice the pending block's base fee plus the tip, as the services' sender does.
    pending = _rpc(rpc_url, "eth_getBlockByNumber", ["pending", False])
    base_fee = (
        int(str(pending.get("baseFeePerGas") or "0x0"), 16) if isinstance(pending, dict) else 0
    )
    tip = 10**9
    cmd = [
        str(FORGE_SH), "script", DEPLOY_SCRIPT, "--rpc-url", rpc_url, "--broadcast",
        "--with-gas-price", str(2 * base_fee + tip), "--priority-gas-price", str(tip),
    ]  # fmt: skip
    scratch_path = CONTRACTS_DIR / scratch
    try:
        try:
            proc = subprocess.run(
                cmd, env=env, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            raise DeployError(f"deploy script timed out after {timeout:.0f}s") from None
        if proc.returncode != 0 or not scratch_path.exists():
            tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-40:])
            raise DeployError(
                f"deploy script failed (exit {proc.returncode}):\n"
                f"{_scrub(_scrub(tail, key), rpc_url)}"
            )
        deployment = Deployment.load(scratch_path)
    finally:
        scratch_path.unlink(missing_ok=True)

    chain_id = int(str(_rpc(rpc_url, "eth_chainId", [])), 16)
    if chain_id != deployment.chain_id:
        raise DeployError(f"deployed to chain {deployment.chain_id} but RPC reports {chain_id}")
    addresses = list(deployment.contracts.by_name().values()) + [
        m.vamm for m in deployment.markets.values()
    ]
    for address in addresses:
        if _rpc(rpc_url, "eth_getCode", [address, "latest"]) in ("0x", "0x0", None):
            raise DeployError(f"no code at {address} after the deploy script ran")
    deployment.save(Path(out_path))
    return deployment
