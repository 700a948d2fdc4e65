"""`perpex operator`: the PerpMarket operator (kopf), with /healthz and /readyz on HEALTH_PORT.

Replicas coordinate through kopf peering: each one announces itself in the ClusterKopfPeering
(or, when watching namespaces, the KopfPeering in each namespace) named by --peering, and only
the live peer with the highest priority handles PerpMarkets; the others stand by and take over
when its keep-alive lapses. Equal priorities make kopf pause every peer, so unless
PERPEX_OPERATOR_PRIORITY or --priority is given each process draws a random one.
"""

from __future__ import annotations

import asyncio
import logging
import random
import sys
from typing import Any

import click
import kopf

from services.operator.config import OperatorConfig, OperatorConfigError
from services.operator.handlers import register
from services.operator.health import HealthServer

EXIT_CONFIG_ERROR = 2


async def run_operator(
    config: OperatorConfig,
    namespaces: tuple[str, ...],
    peering: str | None,
    priority: int,
    health_host: str = "0.0.0.0",
) -> None:
    # kopf handles SIGTERM/SIGINT itself (graceful stop, then cleanup handlers).
    registry = kopf.get_default_registry()
    register(registry, config)
    ready = asyncio.Event()
    health = HealthServer(ready, host=health_host, port=config.health_port)
    await health.start()
    try:
        await kopf.operator(
            registry=registry,
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            standalone=peering is None,
            peering_name=peering,
            priority=priority,
            ready_flag=ready,
            memo=kopf.Memo(),
        )
    finally:
        await health.stop()


@click.command(name="operator")
@click.option(
    "--namespace",
    "-n",
    "namespaces",
    multiple=True,
    help="Namespace to watch (repeatable). Default: all namespaces.",
)
@click.option(
    "--peering",
    envvar="PERPEX_OPERATOR_PEERING",
    default="perpex-operator",
    show_default=True,
    help="kopf peering object through which replicas coordinate.",
)
@click.option("--standalone", is_flag=True, help="Run without peering (a single replica only).")
@click.option(
    "--priority",
    envvar="PERPEX_OPERATOR_PRIORITY",
    type=int,
    default=None,
    help="Peering priority; the highest live one is active. Default: random.",
)
@click.option("--verbose", "-v", is_flag=True, help="Debug logging.")
def operator(
    namespaces: tuple[str, ...],
    peering: str,
    standalone: bool,
    priority: int | None,
    verbose: bool,
) -> None:
    """Run the PerpMarket operator (reconciles keeper/funding Deployments per market)."""
    try:
        config = OperatorConfig.from_env()
    except OperatorConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.FULL)
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
    chosen = priority if priority is not None else random.SystemRandom().randrange(1, 2**31)
    kwargs: dict[str, Any] = {
        "config": config,
        "namespaces": namespaces,
        "peering": None if standalone else peering,
        "priority": chosen,
    }
    asyncio.run(run_operator(**kwargs))
