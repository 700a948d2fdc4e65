"""A fault-injecting JSON-RPC proxy for tests and benchmarks (127.0.0.1, random port).

It forwards POSTs to a real node and, when told to, answers instead:
- at random (seeded): HTTP 429 with Retry-After, HTTP 5xx, a reply slower than the client's
  timeout (`delay`; the request is still forwarded, late), a 200 whose body is cut short, the
  connection dropped before forwarding (the node never sees the request) or after it (the
  node acted on it, the client gets no answer) (`p_429`, `p_5xx`, `p_timeout`, `p_truncate`,
  `p_drop_before`, `p_drop_after`); and eth_blockNumber answering 1-4 blocks behind the head
  (`p_lag`), as a load-balanced provider whose nodes lag does. `FaultProxy.chaos(url, rate)`
  spreads one rate over all of them. `methods`, when set, limits the random faults to those
  JSON-RPC methods;
- a rate-limited provider's eth_getLogs limits: spans over `max_span` blocks get "block range
  too large", answers with more than `max_results` logs get -32005 "query returned more than N
  results";
- on demand: HTTP `fail_status` (503) for everything while `down` is set, or for the next N
  requests of a method (`fail_next["eth_call"] = 2`).
It counts requests per method (`seen`), refused ones (`failed`) and injected faults (`faults`).
"""

from __future__ import annotations

import asyncio
import json
import random
from collections import Counter, defaultdict, deque
from collections.abc import Collection
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
        p_drop_before: float = 0.0,
        p_drop_after: float = 0.0,
        p_lag: float = 0.0,
        methods: Collection[str] | None = None,
        fail_status: int = 503,
    ):
        self.upstream = upstream
        self.rng = random.Random(seed)
        self.p = {
            "429": p_429,
            "5xx": p_5xx,
            "timeout": p_timeout,
            "truncate": p_truncate,
            "drop_before": p_drop_before,
            "drop_after": p_drop_after,
        }
        self.p_lag = p_lag
        self.methods = frozenset(methods) if methods is not None else None
        self.fail_status = fail_status
        self.delay = delay
        self.max_span = max_span
        self.max_results = max_results
        self.enabled = True  # False: forward everything untouched (random faults off)
        self.down = False
        self.fail_next: Counter[str] = Counter()  # method -> how many more to refuse
        self.scripted: dict[str, deque[str]] = defaultdict(deque)  # method -> faults to inject
        self.seen: Counter[str] = Counter()
        self.failed: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.requests = 0
        self._runner: web.AppRunner | None = None
        self._session: aiohttp.ClientSession | None = None
        self.url = ""

    def inject(self, method: str, *faults: str) -> None:
        """The next requests of `method` get these faults, one each, in order ("429", "5xx",
        "timeout", "truncate", "drop_before", "drop_after", "lag"), whatever the rates."""
        self.scripted[method].extend(faults)

    @classmethod
    def chaos(
        cls, upstream: str, rate: float = 0.1, seed: int = 1, delay: float = 1.5, **kw: Any
    ) -> FaultProxy:
        """Every fault at once, `rate` of the requests in all: 429, 5xx, slow answers past the
        client's timeout (`delay`), truncated bodies, connections dropped before or after
        forwarding (each rate/6), and eth_blockNumber 1-4 blocks behind (at `rate`)."""
        each = rate / 6
        return cls(
            upstream,
            seed=seed,
            p_429=each,
            p_5xx=each,
            p_timeout=each,
            p_truncate=each,
            p_drop_before=each,
            p_drop_after=each,
            p_lag=rate,
            delay=delay,
            **kw,
        )

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
            return web.Response(status=self.fail_status, text="Service Temporarily Unavailable")
        targeted = self.enabled and (
            self.methods is None or any(m in self.methods for m in methods)
        )
        fault = self._roll() if targeted else None
        for m in methods:
            if self.scripted.get(m):
                fault = self.scripted[m].popleft()
                break
        lag = fault == "lag"
        if fault == "drop_before":
            self.faults["drop_before"] += 1
            return self._drop(request)
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
        if fault == "drop_after":
            self.faults["drop_after"] += 1
            return self._drop(request)
        if fault == "truncate" and len(data) > 2:
            self.faults["truncate"] += 1
            return web.Response(
                status=200, body=data[: len(data) // 2], content_type="application/json"
            )
        if methods == ["eth_blockNumber"] and (
            lag or (targeted and self.p_lag and self.rng.random() < self.p_lag)
        ):
            data = self._lagging(data)
        return web.Response(status=status, body=data, content_type="application/json")

    def _lagging(self, data: bytes) -> bytes:
        """An eth_blockNumber answer 1-4 blocks behind."""
        try:
            reply = json.loads(data)
            head = int(reply["result"], 16)
        except (ValueError, KeyError, TypeError):
            return data
        self.faults["lag"] += 1
        reply["result"] = hex(max(0, head - self.rng.randint(1, 4)))
        return json.dumps(reply).encode()

    @staticmethod
    def _drop(request: web.Request) -> web.StreamResponse:
        """Close the connection without an answer."""
        if request.transport is not None:
            request.transport.abort()
        return web.Response(status=500)  # never reaches the client

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


def main(argv: list[str] | None = None) -> None:
    """`python -m perpex_dev.devstack.fault_proxy UPSTREAM --rate 0.1`: run a chaos proxy in a
    process of its own (benchmarks: its work stays off the measured process). Prints its URL
    on the first line; on SIGTERM/SIGINT prints a JSON object of its counters and exits."""
    import argparse
    import signal

    parser = argparse.ArgumentParser(prog="fault_proxy")
    parser.add_argument("upstream")
    parser.add_argument("--rate", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--delay", type=float, default=1.5, help="slow answers take this long")
    args = parser.parse_args(argv)

    async def run() -> None:
        proxy = FaultProxy.chaos(args.upstream, rate=args.rate, seed=args.seed, delay=args.delay)
        await proxy.start()
        print(proxy.url, flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        await stop.wait()
        print(
            json.dumps(
                {"requests": proxy.requests, "faults": dict(proxy.faults), "seen": dict(proxy.seen)}
            ),
            flush=True,
        )
        await proxy.stop()

    asyncio.run(run())


if __name__ == "__main__":
    main()
