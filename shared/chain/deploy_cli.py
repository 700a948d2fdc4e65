"""`perpex deploy`: deploy the protocol with contracts/script/Deploy.s.sol and write the
deployment file the services read."""

from __future__ import annotations

import json
import os

import click

from shared.chain.deploy import DeployError, deploy_local


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
def deploy(
    rpc_url: str,
    out_path: str,
    private_key_env: str,
    eth_price: int | None,
    btc_price: int | None,
    funding_interval: int | None,
) -> None:
    """Deploy vUSDT, Vault, PriceOracle, PositionNFT, PositionManager and the ETH/USDT and
    BTC/USDT markets; print the deployment (never the key)."""
    key = os.environ.get(private_key_env, "").strip()
    if not key:
        raise click.ClickException(f"set the deployer's private key in ${private_key_env}")
    try:
        deployment = deploy_local(
            rpc_url,
            key,
            out_path,
            eth_price=eth_price,
            btc_price=btc_price,
            funding_interval=funding_interval,
        )
    except DeployError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(json.dumps(deployment.to_dict(), indent=2))
    click.echo(f"deployment written to {out_path}", err=True)
