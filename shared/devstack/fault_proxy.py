"""A fault-injecting JSON-RPC proxy for tests (127.0.0.1, random port).

It forwards POSTs to a real node and, when told to, answers instead:
- at random (seeded): HTTP 429 with Retry-After, HTTP 5xx, a reply slower than the client's
  timeout, or a 200 whose body is cut short (`p_429`, `p_5xx`, `p_timeout`, `p_truncate`);
- a rate-limited provider's eth_getLogs limits: spans over `max_span` blocks get "block range
  too large", answers with more than `max_results` logs get -32005 "query returned more than N
  results";
- on demand: HTTP 503 for everything while `down` is set, or for the next N requests of a
  method (`fail_next["eth_call"] = 2`).
It counts requests per method (`seen`), refused ones (`failed`) and injected faults (`faults`).
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
        p_429: float = 0.0,
        p_5xx: float = 0.0,
        p_timeout: float = 0.0,
        p_truncate: float = 0.0,
        delay: float = 1.5,
        max_span: int | None = None,
        max_results: int | None = None,
    ):
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.p = {"429": p_429, "5xx": p_5xx, "timeout": p_timeout, "truncate": p_truncate}
        self.delay = delay
        self.max_span = max_span
        self.max_results = max_results
        self.down = False
        self.fail_next: Counter[str] = Counter()  # method -> how many more to refuse
        self.seen: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
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
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=30))
        self.url = f"http://127.0.0.1:{port}"
        return self.url

    async def stop(self) -> None:
        if self._session is not None:
            await self._session.close()
        if self._runner is not None:
            await self._runner.cleanup()

    async def __aenter__(self) -> FaultProxy:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _roll(self) -> str | None:
        x = self.rng.random()
        for kind, p in self.p.items():
            if x < p:
                return kind
            x -= p
        return None

    @staticmethod
    def _methods(payload: Any) -> list[str]:
        items = payload if isinstance(payload, list) else [payload]
        return [str(i.get("method", "?")) for i in items if isinstance(i, dict)] or ["?"]

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        body = await request.read()
        try:
            payload = json.loads(body)
        except ValueError:
            payload = None
        methods = self._methods(payload)
        self.seen.update(methods)
        if self.down or any(self.fail_next[m] > 0 for m in methods):
            for m in methods:
                if self.fail_next[m] > 0:
                    self.fail_next[m] -= 1
            self.failed.update(methods)
            return web.Response(status=503, text="Service Temporarily Unavailable")
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
