"""`perpex dashboard`: serve the web dashboard (page, JSON API, /ws live feed, probes).

Exit 2 on bad configuration. SIGTERM/SIGINT: uvicorn stops accepting, closes WebSockets, the
Kafka consumer stops and the process exits 0.
"""

from __future__ import annotations

import logging
import sys

import click

from services.dashboard.settings import load_dashboard_settings
from shared.config import exit_on_config_error
from shared.telemetry import setup_telemetry


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
    settings = exit_on_config_error(lambda: load_dashboard_settings(**overrides))
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    setup_telemetry("perpex-dashboard")

    import uvicorn

    from services.dashboard.app import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.dashboard_host,
        port=settings.dashboard_port,
        log_level="warning" if settings.log_level != "DEBUG" else "info",
        timeout_graceful_shutdown=5,
        proxy_headers=True,
    )
