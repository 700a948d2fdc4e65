"""A fault-injecting JSON-RPC proxy for tests (127.0.0.1, random port).

Forwards to a real node and, at random (seeded), answers instead: HTTP 429 with Retry-After,
HTTP 5xx, a reply slower than the client's timeout, or a 200 whose body is cut short. It also
plays a rate-limited provider's eth_getLogs limits: spans over `max_span` blocks get a "block
range too large" error and answers with more than `max_results` logs a -32005 "query returned
more than N results".
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter
from typing import Any

import aiohttp
from aiohttp import web


class FaultProxy:
    def __init__(
        self,
        upstream: str,
        seed: int = 1,
        p_429: float = 0.08,
        p_5xx: float = 0.08,
        p_timeout: float = 0.03,
        p_truncate: float = 0.06,
        delay: float = 1.5,
        max_span: int | None = 60,
        max_results: int | None = 150,
    ):
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.p = {"429": p_429, "5xx": p_5xx, "timeout": p_timeout, "truncate": p_truncate}
        self.delay = delay
        self.max_span = max_span
        self.max_results = max_results
        self.faults: Counter[str] = Counter()
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    async def start(self) -> str:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self._session = aiohttp.ClientSession()
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def _roll(self) -> str | None:
        x = self.rng.random()
        for kind, p in self.p.items():
            if x < p:
                return kind
            x -= p
        return None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        fault = self._roll()
        if fault == "429":
            self.faults["429"] += 1
            return web.Response(status=429, text="slow down", headers={"Retry-After": "0"})
        if fault == "5xx":
            self.faults["5xx"] += 1
            return web.Response(status=self.rng.choice([500, 502, 503]), text="upstream error")
        if fault == "timeout":
            self.faults["timeout"] += 1
            await asyncio.sleep(self.delay)
        payload = json.loads(body)
        limited = self._limits(payload)
        if limited is not None:
            return web.json_response(limited)
        assert self._session is not None
        async with self._session.post(
            self.upstream, data=body, headers={"Content-Type": "application/json"}
        ) as upstream:
            data = await upstream.read()
            status = upstream.status
        if (
            self.max_results is not None
            and isinstance(payload, dict)
            and payload.get("method") == "eth_getLogs"
        ):
            reply = json.loads(data)
            if isinstance(reply.get("result"), list) and len(reply["result"]) > self.max_results:
                self.faults["too_many"] += 1
                return web.json_response(
                    _error(payload, -32005, f"query returned more than {self.max_results} results")
                )
        if fault == "truncate" and len(data) > 2:
            self.faults["truncate"] += 1
            return web.Response(
                status=200, body=data[: len(data) // 2], content_type="application/json"
            )
        return web.Response(status=status, body=data, content_type="application/json")

    def _limits(self, payload: Any) -> dict[str, Any] | None:
        if self.max_span is None or not isinstance(payload, dict):
            return None
        if payload.get("method") != "eth_getLogs":
            return None
        flt = payload["params"][0]
        span = int(flt["toBlock"], 16) - int(flt["fromBlock"], 16) + 1
        if span > self.max_span:
            self.faults["range"] += 1
            return _error(payload, -32000, f"block range is too large (max {self.max_span})")
        return None


def _error(payload: dict[str, Any], code: int, message: str) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": payload.get("id"), "error": {"code": code, "message": message}}
