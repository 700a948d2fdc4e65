"""`perpex operator`: the PerpMarket operator (kopf), in the service skeleton
(shared/service.py): /healthz, /readyz, /status and /metrics on HEALTH_PORT (0: off), logs
with secrets redacted (kopf's lines and the Kubernetes Events it posts included), exit 2 on bad
configuration, 1 (one log line) on a failure.

Signals: while it waits for the Kubernetes API the skeleton's handlers stop the wait (exit 0);
kopf then runs with the skeleton's stop event as its stop flag, and once kopf has started the
skeleton takes SIGTERM/SIGINT back from it, so the first signal stops kopf gracefully (its
cleanup handlers run) and a second exits at once.

Replicas coordinate through kopf peering: each one announces itself in the ClusterKopfPeering
(or, when watching namespaces, the KopfPeering in each namespace) named by --peering, and only
the live peer with the highest priority handles PerpMarkets; the others stand by and take over
when its keep-alive lapses. Equal priorities make kopf pause every peer, so unless
PERPEX_OPERATOR_PRIORITY or --priority is given each process draws a random one.
"""

from __future__ import annotations

import asyncio
import logging
import os
import random
from typing import Any

import click
import kopf

from services.operator import metrics
from services.operator.config import OperatorConfig
from services.operator.handlers import register
from shared.config import ConfigError
from shared.dependencies import Dependencies, Dependency
from shared.logs import install_redaction
from shared.service import Service, install_signal_handlers, run_main, run_service

log = logging.getLogger("perpex.operator")
ON_STOP = "stopping kopf (cleanup handlers run), then exiting"


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
) -> int:
    """The operator in the service skeleton; its exit status."""
    registry = kopf.get_default_registry()
    register(registry, config)
    metrics.start()

    async def main(svc: Service) -> None:
        await svc.wait_for(Dependencies([kubernetes_api()], svc.health, log))
        ready = asyncio.Event()
        svc.spawn(_follow_kopf(svc, ready), "kopf-started")
        await kopf.operator(
            registry=registry,
            clusterwide=not namespaces,
            namespaces=list(namespaces),
            standalone=peering is None,
            peering_name=peering,
            priority=priority,
            ready_flag=ready,
            stop_flag=svc.stop,
            memo=kopf.Memo(),
        )

    return await run_service("operator", log, ON_STOP, main, config.health_port, health_host)


async def _follow_kopf(svc: Service, ready: asyncio.Event) -> None:
    """Ready once kopf has started (and while the API answers); the signals back to the
    skeleton (kopf installed its own handlers when it started)."""
    svc.health.set_ready(False, "starting kopf")
    await ready.wait()
    install_signal_handlers(svc, ON_STOP)
    svc.health.set_ready(True, "kopf started")
    await svc.stop.wait()
    svc.health.set_ready(False, "stopping")


def setup_logging(verbose: bool) -> None:
    """kopf's log format, with every line and posted Event redacted (shared/logs.py)."""
    kopf.configure(verbose=verbose, log_format=kopf.LogFormat.FULL)
    install_redaction()
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


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
    chosen = priority if priority is not None else random.SystemRandom().randrange(1, 2**31)

    def run(config: OperatorConfig) -> Any:
        return run_operator(config, namespaces, None if standalone else peering, chosen)

    run_main(
        "operator", OperatorConfig.from_env, run, configure=lambda _config: setup_logging(verbose)
    )
