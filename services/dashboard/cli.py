"""`perpex dashboard`: serve the web dashboard (page, JSON API, /ws live feed, probes).

It runs in the service skeleton (shared/service.py): the probes and /metrics are also served
alone on HEALTH_PORT (0: off). Exit 2 on bad configuration, 3 when the server cannot start
(e.g. port in use). SIGTERM/SIGINT: uvicorn stops accepting, closes the WebSockets, the Kafka
consumer stops and the process exits 0; a second signal exits at once.
"""

from __future__ import annotations

import asyncio
import logging

import click

from services.dashboard.settings import DashboardSettings, load_dashboard_settings
from shared.http_server import EmbeddedServer
from shared.service import Service, run_main, run_service

log = logging.getLogger("perpex.dashboard")
ON_STOP = "closing connections and stopping"


@click.command("dashboard")
@click.option("--host", default=None, help="Listen address (default DASHBOARD_HOST, 0.0.0.0).")
@click.option("--port", type=int, default=None, help="Listen port (default DASHBOARD_PORT, 8000).")
@click.option("--no-feed", is_flag=True, help="Do not follow Kafka; /ws then stays silent.")
def dashboard(host: str | None, port: int | None, no_feed: bool) -> None:
    """Web dashboard over the indexer's database, with a live event feed from Kafka."""
    overrides: dict[str, object] = {}
    if host is not None:
        overrides["dashboard_host"] = host
    if port is not None:
        overrides["dashboard_port"] = port
    if no_feed:
        overrides["dashboard_kafka_feed"] = False
    run_main("dashboard", lambda: load_dashboard_settings(**overrides), serve)


async def serve(settings: DashboardSettings) -> int:
    """The dashboard in the service skeleton; its exit status."""
    from services.dashboard.app import create_app

    async def main(svc: Service) -> None:
        app = create_app(settings, health=svc.health)
        server = EmbeddedServer(
            app,
            settings.dashboard_host,
            settings.dashboard_port,
            log_level="warning" if settings.log_level != "DEBUG" else "info",
            timeout_graceful_shutdown=5,
            proxy_headers=True,
        )
        serving = asyncio.create_task(server.serve_until_stopped(), name="dashboard-http")
        stopped = asyncio.create_task(svc.stop.wait(), name="dashboard-stop")
        try:
            await asyncio.wait({serving, stopped}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            server.request_stop()
            stopped.cancel()
            await serving  # CannotServe when it never started

    return await run_service(
        "dashboard",
        log,
        ON_STOP,
        main,
        settings.health_port,
        health_host=settings.dashboard_host,
    )
