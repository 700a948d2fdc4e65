"""`perpex dev up | status | down`."""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path

import click

from perpex_dev.devstack.components import ComponentError, StackConfig
from perpex_dev.devstack.stack import LocalStack


def _stack(ctx: click.Context) -> LocalStack:
    return LocalStack(ctx.obj)


@click.group()
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    envvar="PERPEX_DATA_DIR",
    help="state folder (default .perpex/devstack in the checkout)",
)
@click.option(
    "--anvil-port", type=int, envvar="PERPEX_ANVIL_PORT", default=58545, show_default=True
)
@click.option(
    "--postgres-port", type=int, envvar="PERPEX_PG_PORT", default=55432, show_default=True
)
@click.option(
    "--kafka-port", type=int, envvar="PERPEX_KAFKA_PORT", default=59092, show_default=True
)
@click.option(
    "--remote-anvil-port",
    type=int,
    envvar="PERPEX_REMOTE_ANVIL_PORT",
    default=None,
    help="also start the bridge's second chain (anvil, chain id 31338) on this port",
)
@click.option(
    "--block-time",
    type=float,
    envvar="PERPEX_BLOCK_TIME",
    default=None,
    help="seconds per block; default automine",
)
@click.pass_context
def dev(
    ctx: click.Context,
    data_dir: Path | None,
    anvil_port: int,
    postgres_port: int,
    kafka_port: int,
    remote_anvil_port: int | None,
    block_time: float | None,
) -> None:
    """The embedded local stack: anvil, PostgreSQL and a Kafka-protocol broker on 127.0.0.1
    (and the bridge's second anvil with --remote-anvil-port)."""
    config = StackConfig(
        anvil_port=anvil_port,
        postgres_port=postgres_port,
        kafka_port=kafka_port,
        block_time=block_time,
        remote_anvil_port=remote_anvil_port,
    )
    if data_dir is not None:
        config = replace(config, data_dir=data_dir.absolute())
    ctx.obj = config


@dev.command()
@click.pass_context
def up(ctx: click.Context) -> None:
    """Start every component (safe to run twice) and wait until each answers."""
    stack = _stack(ctx)
    try:
        stack.up()
    except ComponentError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_status(stack, as_json=False)


@dev.command()
@click.option("--json", "as_json", is_flag=True, help="machine-readable output")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Each component, its URL and health. Exit 1 when any is unhealthy."""
    stack = _stack(ctx)
    healthy = _print_status(stack, as_json)
    sys.exit(0 if healthy else 1)


@dev.command()
@click.pass_context
def down(ctx: click.Context) -> None:
    """Stop the processes `up` started (by pid), leaving nothing running."""
    stack = _stack(ctx)
    result = stack.down()
    for name, gone in result.items():
        click.echo(f"{name:9} {'stopped' if gone else 'STILL RUNNING'}")
    if not all(result.values()):
        sys.exit(1)


@dev.command()
@click.pass_context
def env(ctx: click.Context) -> None:
    """Print the service environment (RPC_URL, DB_URI, ...) for this stack."""
    for key, value in _stack(ctx).env().items():
        click.echo(f"{key}={value}")


def _print_status(stack: LocalStack, as_json: bool) -> bool:
    rows = stack.status()
    if as_json:
        click.echo(
            json.dumps(
                [
                    {
                        "component": c.name,
                        "url": c.url,
                        "healthy": h.ok,
                        "detail": h.detail,
                        "pid": getattr(c.record(), "pid", None),
                    }
                    for c, h in rows
                ]
            )
        )
    else:
        for comp, health in rows:
            mark = "healthy" if health.ok else "DOWN"
            click.echo(f"{comp.name:9} {mark:8} {comp.url:28} {health.detail}")
    return all(h.ok for _, h in rows)
