"""HTTP health endpoints on HEALTH_PORT (8080): GET /healthz (liveness) and /readyz (readiness).

/healthz answers 200 while the event loop runs. /readyz answers 200 once kopf has finished its
startup (the ready flag) and every dependency that gates readiness answers (the Kubernetes API:
shared/dependencies.py reports it in `state`), and 503 before that, while the API does not
answer, or after shutdown began.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from shared.health import HealthState


class HealthServer:
    def __init__(
        self,
        ready: asyncio.Event,
        host: str = "0.0.0.0",
        port: int = 8080,
        state: HealthState | None = None,
    ):
        self.ready = ready
        self.state = state or HealthState()
        self.stopping = False
        self.host = host
        self.port = port
        self._runner: web.AppRunner | None = None

    async def _healthz(self, _: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def _readyz(self, _: web.Request) -> web.Response:
        failing = self.state.failing()
        if self.ready.is_set() and not self.stopping and not failing:
            return web.json_response({"status": "ready"})
        status = "stopping" if self.stopping else "starting" if not failing else "unavailable"
        body: dict[str, object] = {"status": status}
        if failing:
            body["unreachable"] = failing
        return web.json_response(body, status=503)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()

    @property
    def bound_port(self) -> int:
        """The port actually listened on (useful when constructed with port 0)."""
        assert self._runner is not None, "not started"
        return int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        self.stopping = True
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
