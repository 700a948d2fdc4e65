"""A tiny JSON-RPC fault proxy for tests: forwards POSTs to the real node, or answers HTTP 503
while `down` is set, or for the next N requests of a given method. Counts what it sees."""

from __future__ import annotations

import json
import socket
from collections import Counter
from typing import Any

from aiohttp import ClientSession, ClientTimeout, web


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class FaultProxy:
    def __init__(self, upstream: str):
        self.upstream = upstream
        self.port = _free_port()
        self.down = False
        self.fail_next: Counter[str] = Counter()  # method -> how many more to fail
        self.seen: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self._runner: web.AppRunner | None = None
        self._session: ClientSession | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def __aenter__(self) -> FaultProxy:
        self._session = ClientSession(timeout=ClientTimeout(total=30))
        app = web.Application()
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return self

    async def __aexit__(self, *exc: Any) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
        if self._session is not None:
            await self._session.close()

    def _methods(self, body: bytes) -> list[str]:
        try:
            data = json.loads(body)
        except ValueError:
            return ["?"]
        items = data if isinstance(data, list) else [data]
        return [str(i.get("method", "?")) for i in items if isinstance(i, dict)]

    async def _handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        methods = self._methods(body)
        self.seen.update(methods)
        failing = self.down or any(self.fail_next[m] > 0 for m in methods)
        if failing:
            for m in methods:
                if self.fail_next[m] > 0:
                    self.fail_next[m] -= 1
            self.failed.update(methods)
            return web.Response(status=503, text="Service Temporarily Unavailable")
        assert self._session is not None
        async with self._session.post(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        ) as resp:
            payload = await resp.read()
            return web.Response(status=resp.status, body=payload, content_type="application/json")
