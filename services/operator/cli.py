"""`perpex operator`: the PerpMarket operator (kopf), with /healthz and /readyz on HEALTH_PORT.

Replicas coordinate through kopf peering: each one announces itself in the ClusterKopfPeering
(or, when watching namespaces, the KopfPeering in each namespace) named by --peering, and only
the live peer with the highest priority handles PerpMarkets; the others stand by and take over
when its keep-alive lapses. Equal priorities make kopf pause every peer, so unless
PERPEX_OPERATOR_PRIORITY or --priority is given each process draws a random one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import random
import signal
import sys
from typing import Any

import click
import kopf

from services.operator.config import OperatorConfig, OperatorConfigError
from services.operator.handlers import register
from services.operator.health import HealthServer
from shared.config import ConfigError
from shared.dependencies import Dependencies, Dependency
from shared.health import HealthState

EXIT_CONFIG_ERROR = 2
log = logging.getLogger("perpex.operator")


def kubernetes_api() -> Dependency:
    """The Kubernetes API (GET /version), with the credentials kopf uses: the pod's
    ServiceAccount in a cluster, else the kubeconfig. No credentials at all: ConfigError."""
    from kubernetes.config import ConfigException

    from shared.kube import KubeApi

    async def probe() -> None:
        try:
            api = await KubeApi.from_environment()
        except (ConfigException, FileNotFoundError) as exc:
            raise ConfigError(
                {"KUBECONFIG": f"no in-cluster ServiceAccount and no usable kubeconfig ({exc})"},
                "operator",
            ) from None
        try:
            await api.version()
        finally:
            await api.close()

    where = "in-cluster" if os.environ.get("KUBERNETES_SERVICE_HOST") else "kubeconfig"
    return Dependency("Kubernetes API", where, probe)


async def run_operator(
    config: OperatorConfig,
    namespaces: tuple[str, ...],
    peering: str | None,
    priority: int,
    health_host: str = "0.0.0.0",
) -> None:
    registry = kopf.get_default_registry()
    register(registry, config)
    ready = asyncio.Event()
    state = HealthState()
    deps = Dependencies([kubernetes_api()], state, log)
    health = HealthServer(ready, host=health_host, port=config.health_port, state=state)
    await health.start()
    stop = asyncio.Event()
    watch: asyncio.Task[None] | None = None
    try:
        # Until kopf takes over SIGTERM/SIGINT, they end the wait for the API (exit 0).
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        try:
            if not await deps.wait(stop):
                log.info("stopped while waiting for the Kubernetes API")
                return
        finally:
            for sig in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(sig)
        watch = deps.start_watch(stop)
        # kopf handles SIGTERM/SIGINT itself (graceful stop, then cleanup handlers).
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
        stop.set()
        if watch is not None:
            watch.cancel()
            with contextlib.suppress(BaseException):
                await watch
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
    try:
        asyncio.run(run_operator(**kwargs))
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
