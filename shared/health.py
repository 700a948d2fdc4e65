"""Liveness and readiness over HTTP for Kubernetes probes: GET /healthz and /readyz on
HEALTH_PORT (8080). A service sets its own readiness (`set_ready`) and `alive` off when its
main loop is wedged; its dependencies (PostgreSQL, the broker, the RPC node: see
shared/dependencies.py) report themselves with `set_dependency`, and /readyz answers 200 only
while the service is ready *and* every dependency that gates readiness is reachable, naming the
ones that are not. /status returns the service's own JSON status and its dependencies."""

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
        self._ready = False
        self._reason = "starting"
        self._status = status or (lambda: {})
        # dependency name -> (problem or None when reachable, whether it gates readiness)
        self.dependencies: dict[str, tuple[str | None, bool]] = {}

    @property
    def ready(self) -> bool:
        """The service says it is ready and every dependency that gates readiness answers."""
        return self._ready and not self.failing()

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value

    @property
    def reason(self) -> str:
        failing = self.failing()
        if failing:
            return "; ".join(f"{name} unreachable ({why})" for name, why in failing.items())
        return self._reason

    @reason.setter
    def reason(self, value: str) -> None:
        self._reason = value

    def set_ready(self, ready: bool, reason: str = "") -> None:
        self._ready = ready
        self._reason = reason or ("ready" if ready else "not ready")

    def set_dependency(self, name: str, problem: str | None, gates: bool = True) -> None:
        """`name` is reachable (problem None) or not (why)."""
        self.dependencies[name] = (problem, gates)

    def failing(self) -> dict[str, str]:
        """The dependencies that gate readiness and do not answer, with why."""
        return {
            name: problem
            for name, (problem, gates) in self.dependencies.items()
            if gates and problem is not None
        }

    def dependency_status(self) -> dict[str, str]:
        return {name: problem or "ok" for name, (problem, _) in self.dependencies.items()}

    def app(self) -> Starlette:
        async def healthz(_: Request) -> PlainTextResponse:
            return PlainTextResponse("ok" if self.alive else "wedged", 200 if self.alive else 503)

        async def readyz(_: Request) -> PlainTextResponse:
            return PlainTextResponse(self.reason, 200 if self.ready else 503)

        async def status(_: Request) -> JSONResponse:
            return JSONResponse(
                {
                    "ready": self.ready,
                    "reason": self.reason,
                    "dependencies": self.dependency_status(),
                    **self._status(),
                }
            )

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
