"""Liveness and readiness over HTTP for Kubernetes probes: GET /healthz and /readyz on
HEALTH_PORT (8080). A service flips `ready` once its dependencies answer and `alive` off when
its main loop is wedged; /status returns the service's own JSON status."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

log = logging.getLogger(__name__)


class HealthState:
    def __init__(self, status: Callable[[], dict[str, Any]] | None = None):
        self.alive = True
        self.ready = False
        self.reason = "starting"
        self._status = status or (lambda: {})

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self.ready = ready
        self.reason = reason or ("ready" if ready else "not ready")

    def app(self) -> Starlette:
        async def healthz(_: Request) -> PlainTextResponse:
            return PlainTextResponse("ok" if self.alive else "wedged", 200 if self.alive else 503)

        async def readyz(_: Request) -> PlainTextResponse:
            return PlainTextResponse(self.reason, 200 if self.ready else 503)

        async def status(_: Request) -> JSONResponse:
            return JSONResponse({"ready": self.ready, "reason": self.reason, **self._status()})

        return Starlette(
            routes=[Route("/healthz", healthz), Route("/readyz", readyz), Route("/status", status)]
        )


class _EmbeddedServer(uvicorn.Server):
    """uvicorn inside a service: the service, not uvicorn, owns SIGTERM/SIGINT."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


async def serve_health(state: HealthState, port: int | None = None) -> None:
    """Serve the probes until cancelled. Port 0 or HEALTH_PORT=0 disables the server."""
    port = int(os.environ.get("HEALTH_PORT", "8080")) if port is None else port
    if port == 0:
        await asyncio.Event().wait()
        return
    config = uvicorn.Config(state.app(), host="0.0.0.0", port=port, log_level="warning")
    server = _EmbeddedServer(config)
    try:
        await server.serve()
    finally:
        with contextlib.suppress(Exception):
            await server.shutdown()
