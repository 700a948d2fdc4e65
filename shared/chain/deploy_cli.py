"""`perpex deploy`: deploy the protocol with contracts/script/Deploy.s.sol and write the
deployment file the services read; with --remote-rpc-url also the cross-chain collateral bridge
(contracts/script/DeployBridge.s.sol, docs/bridge.md)."""

from __future__ import annotations

import json
import os

import click

from shared.chain.deploy import DeployError, deploy_bridge, deploy_local


@click.command(name="deploy")
@click.option(
    "--rpc-url",
    default=lambda: os.environ.get("RPC_URL", "http://127.0.0.1:8545"),
    show_default="$RPC_URL or http://127.0.0.1:8545",
    help="JSON-RPC endpoint to deploy to.",
)
@click.option(
    "--out",
    "out_path",
    default=lambda: os.environ.get("DEPLOYMENT_FILE", ".perpex/deployment.json"),
    show_default="$DEPLOYMENT_FILE or .perpex/deployment.json",
    type=click.Path(dir_okay=False),
    help="Where to write the deployment JSON.",
)
@click.option(
    "--private-key-env",
    default="PRIVATE_KEY",
    show_default=True,
    help="Name of the environment variable holding the deployer's private key.",
)
@click.option("--eth-price", type=int, default=None, help="Initial ETH/USDT price (whole USDT).")
@click.option("--btc-price", type=int, default=None, help="Initial BTC/USDT price (whole USDT).")
@click.option("--funding-interval", type=int, default=None, help="Funding interval in seconds.")
@click.option(
    "--remote-rpc-url",
    default=None,
    help="Also deploy the cross-chain bridge, with its depositor on this chain (docs/bridge.md).",
)
@click.option(
    "--relayer",
    default=lambda: os.environ.get("RELAYER_ADDRESS"),
    show_default="$RELAYER_ADDRESS",
    help="Address `perpex relayer` verifies packets with (the local message libraries' verifier).",
)
@click.option(
    "--bridge-reserve",
    type=int,
    default=None,
    help="Home collateral (whole tokens) in the bridge's reserve (default 10,000,000).",
)
def deploy(
    rpc_url: str,
    out_path: str,
    private_key_env: str,
    eth_price: int | None,
    btc_price: int | None,
    funding_interval: int | None,
    remote_rpc_url: str | None,
    relayer: str | None,
    bridge_reserve: int | None,
) -> None:
    """Deploy vUSDT, Vault, PriceOracle, PositionNFT, PositionManager and the ETH/USDT and
    BTC/USDT markets (and the bridge with --remote-rpc-url); print the deployment (never the
    key)."""
    key = os.environ.get(private_key_env, "").strip()
    if not key:
        raise click.ClickException(f"set the deployer's private key in ${private_key_env}")
    if remote_rpc_url and not relayer:
        raise click.ClickException("--remote-rpc-url needs --relayer (or $RELAYER_ADDRESS)")
    try:
        deployment = deploy_local(
            rpc_url,
            key,
            out_path,
            eth_price=eth_price,
            btc_price=btc_price,
            funding_interval=funding_interval,
        )
        if remote_rpc_url and relayer:
            deployment = deploy_bridge(
                rpc_url, remote_rpc_url, key, out_path, relayer=relayer, reserve=bridge_reserve
            )
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(deployment.to_dict(), indent=2))
    click.echo(f"deployment written to {out_path}", err=True)
