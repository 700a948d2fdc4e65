"""`perpex dashboard`: serve the web dashboard (page, JSON API, /ws live feed, probes).

Exit 2 on bad configuration, 3 when the server cannot start (e.g. port in use). SIGTERM/SIGINT:
uvicorn stops accepting, closes the WebSockets, the Kafka consumer stops and the process exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Iterator

import click
import uvicorn

from services.dashboard.settings import DashboardSettings, load_dashboard_settings
from shared.config import exit_on_config_error
from shared.service import configure_logging
from shared.telemetry import setup_telemetry

log = logging.getLogger("perpex.dashboard")


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
    configure_logging(settings.log_level)
    setup_telemetry("perpex-dashboard")

    sys.exit(asyncio.run(serve(settings)))


class _Server(uvicorn.Server):
    """uvicorn without its own signal handling: `serve` owns SIGTERM/SIGINT, so a requested
    stop exits 0 (uvicorn would re-raise the signal after shutting down)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def _on_signal(servers: list[_Server], sig: signal.Signals) -> None:
    log.info("%s received: closing connections and stopping", sig.name)
    for server in servers:
        if server.should_exit:  # a second signal: stop waiting for connections to finish
            server.force_exit = True
        server.should_exit = True


async def serve(settings: DashboardSettings) -> int:
    from services.dashboard.app import create_app, probe_app

    app = create_app(settings)
    log_level = "warning" if settings.log_level != "DEBUG" else "info"
    servers = [
        _Server(
            uvicorn.Config(
                app,
                host=settings.dashboard_host,
                port=settings.dashboard_port,
                log_level=log_level,
                timeout_graceful_shutdown=5,
                proxy_headers=True,
            )
        )
    ]
    if settings.health_port:
        servers.append(
            _Server(
                uvicorn.Config(
                    probe_app(app),
                    host=settings.dashboard_host,
                    port=settings.health_port,
                    log_level=log_level,
                    lifespan="off",
                )
            )
        )
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, servers, sig)
    tasks = [asyncio.create_task(_run(s)) for s in servers]
    # Either server stopping (a signal, or a failed start) stops the other.
    await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    for server in servers:
        server.should_exit = True
    codes = await asyncio.gather(*tasks)
    return max(codes)


async def _run(server: _Server) -> int:
    """Serve until told to stop. uvicorn raises SystemExit(3) when it cannot bind; keep that
    as the exit status instead of letting it escape the task."""
    try:
        await server.serve()
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1
    return 0 if server.started else 1
