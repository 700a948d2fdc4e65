"""Liveness, readiness and metrics over HTTP for Kubernetes probes and Prometheus: GET
/healthz, /readyz, /status and /metrics on HEALTH_PORT (8080; 0 turns the server off, in every
service). A service sets its own readiness (`set_ready`, or an async `set_readiness_check` that
/readyz awaits) and `alive` off when its main loop is wedged (shared/service.py's watchdog);
its dependencies (PostgreSQL, the broker, the RPC node: see shared/dependencies.py) report
themselves with `set_dependency`, and /readyz answers 200 only while the service is ready *and*
every dependency that gates readiness is reachable, naming the ones that are not. /status
returns the service's own JSON status (`set_status`) and its dependencies; /metrics the
Prometheus exposition of the service's metrics (shared/metrics.py)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

log = logging.getLogger(__name__)

ReadinessCheck = Callable[[], Awaitable[tuple[bool, str]]]


class HealthState:
    def __init__(self, status: Callable[[], dict[str, Any]] | None = None):
        self.alive = True
        self._ready = False
        self._reason = "starting"
        self._status = status or (lambda: {})
        self._check: ReadinessCheck | None = None
        # dependency name -> (problem or None when reachable, whether it gates readiness)
        self.dependencies: dict[str, tuple[str | None, bool]] = {}

    def set_status(self, status: Callable[[], dict[str, Any]]) -> None:
        """What /status shows beside readiness and dependencies."""
        self._status = status

    def status(self) -> dict[str, Any]:
        return self._status()

    def set_readiness_check(self, check: ReadinessCheck | None) -> None:
        """An async check /readyz runs on every probe (e.g. a database ping), ANDed with the
        rest; it answers (ready, why)."""
        self._check = check

    async def readiness(self) -> tuple[bool, str]:
        """(ready, reason) as /readyz answers it."""
        if not self.ready:
            return False, self.reason
        if self._check is None:
            return True, self.reason
        try:
            return await asyncio.wait_for(self._check(), 5.0)
        except Exception as exc:
            return False, f"readiness check failed: {type(exc).__name__}"

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
            ready, reason = await self.readiness()
            return PlainTextResponse(reason, 200 if ready else 503)

        async def status(_: Request) -> JSONResponse:
            ready, reason = await self.readiness()
            return JSONResponse(
                {
                    "ready": ready,
                    "reason": reason,
                    "dependencies": self.dependency_status(),
                    **self._status(),
                }
            )

        async def metrics(_: Request) -> Response:
            from shared.metrics import CONTENT_TYPE, exposition

            body = exposition()
            if body is None:
                return PlainTextResponse(
                    "no metrics: telemetry is off (OTEL_SDK_DISABLED=true) or not set up", 404
                )
            return Response(body, media_type=CONTENT_TYPE)

        return Starlette(
            routes=[
                Route("/healthz", healthz),
                Route("/readyz", readyz),
                Route("/status", status),
                Route("/metrics", metrics),
            ]
        )


def health_port_from_env() -> int:
    return int(os.environ.get("HEALTH_PORT", "8080"))


async def serve_health(state: HealthState, port: int | None = None, host: str = "0.0.0.0") -> None:
    """Serve the probes and /metrics until cancelled. Port 0 (or HEALTH_PORT=0 when `port` is
    None) disables the server. CannotServe when the port is taken."""
    from shared.http_server import EmbeddedServer

    port = health_port_from_env() if port is None else port
    if port == 0:
        await asyncio.Event().wait()
        return
    server = EmbeddedServer(state.app(), host, port, lifespan="off")
    try:
        await server.serve_until_stopped()
    finally:
        server.request_stop(force=True)
        if server.started:  # cancelled while serving: close the listening socket now
            with contextlib.suppress(Exception):
                await server.shutdown()
