"""`perpex config`: validate the configuration a service would start with."""

from __future__ import annotations

import json

import click
import httpx

from shared.config import (
    EXIT_CONFIG_ERROR,
    BaseServiceSettings,
    ConfigError,
    load_settings,
    verify_chain_id_sync,
)


@click.command("config")
@click.option("--no-chain", is_flag=True, help="skip the CHAIN_ID check against the node")
def config(no_chain: bool) -> None:
    """Validate configuration from the environment and .env; print it with secrets masked.

    Exit 2 with every bad field listed when it is invalid."""
    try:
        settings = load_settings(BaseServiceSettings)
        if not no_chain:
            verify_chain_id_sync(settings)
    except ConfigError as exc:
        click.echo(str(exc), err=True)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
    except httpx.HTTPError as exc:
        click.echo(f"cannot reach RPC_URL: {type(exc).__name__}", err=True)
        raise SystemExit(1) from None
    click.echo(json.dumps(settings.safe_dump(), default=str, indent=2))
