"""The dashboard's Starlette app: JSON API over the indexer's tables, /ws live feed, the page.

HTTP handlers only parse (services.dashboard.params), query (repository) and format
(formatting); the Kafka feed and the WebSocket fan-out live in feed.py and hub.py.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
from starlette.applications import Starlette
from starlette.datastructures import MutableHeaders
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send
from starlette.websockets import WebSocket, WebSocketDisconnect

from services.dashboard.bridge import bridge_transfers, parse_transfer_filter
from services.dashboard.cache import QueryCache
from services.dashboard.feed import KafkaFeed
from services.dashboard.formatting import (
    format_funding,
    format_liquidation,
    format_market,
    format_position,
    format_position_event,
    format_sync,
)
from services.dashboard.governance import governance_view, parse_governance_filter
from services.dashboard.hub import Hub, Subscriber
from services.dashboard.params import (
    Page,
    ParamError,
    parse_funding_filter,
    parse_liquidation_filter,
    parse_position_filter,
    parse_token_id,
    single_values,
)
from services.dashboard.repository import DashboardRepository
from services.dashboard.settings import DashboardSettings
from shared.dependencies import Dependencies, broker, postgres
from shared.health import HealthState

log = logging.getLogger("perpex.dashboard")

STATIC_DIR = Path(__file__).parent / "static"
# Everything the page needs comes from this server: no CDN, no inline script.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
)
DB_ERRORS = (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError)


def _listing(items: list[dict[str, Any]], total: int, page: Page) -> dict[str, Any]:
    end = page.offset + len(items)
    return {
        "items": items,
        "total": total,
        "limit": page.limit,
        "offset": page.offset,
        "next_offset": end if end < total else None,
    }


class Dashboard:
    """The app's state and handlers."""

    def __init__(self, settings: DashboardSettings, enable_feed: bool | None = None):
        self.settings = settings
        self.hub = Hub(settings.dashboard_ws_queue, settings.dashboard_max_clients)
        self.cache = QueryCache(ttl=settings.dashboard_cache_ttl)
        enabled = settings.dashboard_kafka_feed if enable_feed is None else enable_feed
        self.feed: KafkaFeed | None = (
            KafkaFeed(
                settings.kafka_bootstrap_servers,
                settings.kafka_topic,
                self.hub,
                before_push=self.cache.invalidate,
            )
            if enabled
            else None
        )
        self._repo: DashboardRepository | None = None
        self._feed_task: asyncio.Task[None] | None = None
        # PostgreSQL gates readiness; the broker (the live feed) is watched and reported but
        # does not: without it the page and the API still answer from the database.
        self.health = HealthState()
        deps = [postgres(settings.db_uri)]
        if enabled:
            deps.append(
                broker(settings.kafka_bootstrap_servers, required=False, gates_readiness=False)
            )
        self.dependencies = Dependencies(
            deps, self.health, log, interval_s=settings.dependency_check_s
        )
        self._deps_task: asyncio.Task[None] | None = None

    @property
    def repo(self) -> DashboardRepository:
        if self._repo is None:
            raise RuntimeError("dashboard not started")
        return self._repo

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        # min_size=0: no connection at start, so the page and /healthz come up even while
        # PostgreSQL is still starting; queries then answer 503 until it is reachable.
        pool = await asyncpg.create_pool(
            self.settings.db_uri,
            min_size=0,
            max_size=self.settings.dashboard_db_pool_size,
            timeout=5,
            command_timeout=15,
        )
        assert pool is not None
        self._repo = DashboardRepository(pool)
        if self.feed is not None:
            self._feed_task = asyncio.create_task(self.feed.run(), name="dashboard-kafka-feed")
        stop = asyncio.Event()
        self._deps_task = asyncio.create_task(self._follow_dependencies(stop), name="dependencies")
        log.info(
            "dashboard up: topic %s, feed %s",
            self.settings.kafka_topic,
            "on" if self.feed else "off",
        )
        try:
            yield
        finally:
            stop.set()
            if self._deps_task is not None:
                self._deps_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._deps_task
            self.hub.close()
            if self._feed_task is not None:
                self._feed_task.cancel()
                with contextlib.suppress(BaseException):
                    await self._feed_task
            await pool.close()

    # ---- HTTP API ----
    async def positions(self, request: Request) -> Response:
        f = parse_position_filter(request.query_params.multi_items())

        async def compute() -> dict[str, Any]:
            rows, total = await self.repo.positions(f)
            return _listing([format_position(r) for r in rows], total, f.page)

        return JSONResponse(await self.cache.get(("positions", f), compute))

    async def position(self, request: Request) -> Response:
        token_id = parse_token_id(request.path_params["token_id"])
        single_values(request.query_params.multi_items(), ())
        row = await self.repo.position(token_id)
        if row is None:
            return JSONResponse(
                {"error": "not_found", "message": f"no position {token_id}"}, status_code=404
            )
        events = [format_position_event(e) for e in await self.repo.position_events(token_id)]
        return JSONResponse({**format_position(row), "events": events})

    async def markets(self, request: Request) -> Response:
        single_values(request.query_params.multi_items(), ())

        async def compute() -> dict[str, Any]:
            return {"items": [format_market(r) for r in await self.repo.market_stats()]}

        return JSONResponse(await self.cache.get(("markets",), compute))

    async def funding(self, request: Request) -> Response:
        market = request.path_params.get("market")
        f = parse_funding_filter(request.query_params.multi_items(), market)

        async def compute() -> dict[str, Any]:
            rows, total = await self.repo.funding(f)
            return _listing([format_funding(r) for r in rows], total, f.page)

        return JSONResponse(await self.cache.get(("funding", f), compute))

    async def liquidations(self, request: Request) -> Response:
        f = parse_liquidation_filter(request.query_params.multi_items())

        async def compute() -> dict[str, Any]:
            rows, total = await self.repo.liquidations(f)
            return _listing([format_liquidation(r) for r in rows], total, f.page)

        return JSONResponse(await self.cache.get(("liquidations", f), compute))

    async def bridge(self, request: Request) -> Response:
        """Transfers over the cross-chain bridge, with what is in flight (services/dashboard/bridge.py)."""
        f = parse_transfer_filter(request.query_params.multi_items())

        async def compute() -> dict[str, Any]:
            return await bridge_transfers(self.repo.pool, f)

        return JSONResponse(await self.cache.get(("bridge", f), compute))

    async def governance(self, request: Request) -> Response:
        """Proposals and parameter changes (services/dashboard/governance.py)."""
        f = parse_governance_filter(request.query_params.multi_items())

        async def compute() -> dict[str, Any]:
            return await governance_view(self.repo.pool, f)

        return JSONResponse(await self.cache.get(("governance", f), compute))

    async def status(self, request: Request) -> Response:
        single_values(request.query_params.multi_items(), ())
        sync = [format_sync(r) for r in await self.repo.sync_status()]
        return JSONResponse(
            {
                "sync": sync,
                "feed": self.feed.status() if self.feed else None,
                "dependencies": self.health.dependency_status(),
                "websocket": self.hub.stats(),
                "cache": self.cache.stats(),
                "graphql": _graphql_stats(request),
            }
        )

    async def _follow_dependencies(self, stop: asyncio.Event) -> None:
        """Log what the dashboard waits for at start (PostgreSQL), then watch: a dependency
        that goes away or comes back is logged (readiness itself pings the database)."""
        await self.dependencies.wait(stop)
        await self.dependencies.watch(stop)

    # ---- probes ----
    async def healthz(self, _: Request) -> Response:
        return PlainTextResponse("ok")

    async def readyz(self, _: Request) -> Response:
        try:
            await asyncio.wait_for(self.repo.ping(), timeout=3)
        except (*DB_ERRORS, RuntimeError) as exc:
            return PlainTextResponse(f"database unavailable: {type(exc).__name__}", 503)
        feed = "feed off" if self.feed is None else f"feed {'live' if self.feed.live else 'down'}"
        return PlainTextResponse(f"ready: database ok, {feed}")

    # ---- page ----
    async def index(self, _: Request) -> Response:
        return FileResponse(STATIC_DIR / "index.html", media_type="text/html")

    # ---- WebSocket ----
    async def websocket(self, ws: WebSocket) -> None:
        await ws.accept()
        sub = self.hub.subscribe()
        if sub is None:
            await ws.close(code=1013, reason="too many clients")
            return
        try:
            hello = {
                "type": "hello",
                "topic": self.settings.kafka_topic,
                "feed": self.feed.status() if self.feed else None,
            }
            await ws.send_text(json.dumps(hello))
            reader = asyncio.create_task(self._read_until_closed(ws))
            writer = asyncio.create_task(self._pump(ws, sub))
            _, pending = await asyncio.wait({reader, writer}, return_when=asyncio.FIRST_COMPLETED)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass
        finally:
            self.hub.unsubscribe(sub)

    @staticmethod
    async def _read_until_closed(ws: WebSocket) -> None:
        """The page sends nothing we act on; reading is how a disconnect is noticed."""
        while True:
            message = await ws.receive()
            if message["type"] == "websocket.disconnect":
                return

    @staticmethod
    async def _pump(ws: WebSocket, sub: Subscriber) -> None:
        try:
            while True:
                text, dropped = await sub.take()
                if dropped:
                    await ws.send_text(json.dumps({"type": "lagged", "dropped": dropped}))
                if text is None:
                    await ws.close(code=1001, reason="server shutting down")
                    return
                await ws.send_text(text)
        except (WebSocketDisconnect, RuntimeError, OSError):
            return


def _graphql_stats(request: Request) -> dict[str, Any] | None:
    graphql = getattr(request.app.state, "graphql", None)
    return None if graphql is None else graphql.stats()


def _json_errors(
    handler: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """400 for a bad parameter (naming it), 503 when the database is unreachable."""

    async def wrapped(request: Request) -> Response:
        try:
            return await handler(request)
        except ParamError as exc:
            return JSONResponse(exc.as_json(), status_code=400)
        except asyncpg.UndefinedTableError as exc:
            log.warning("indexer schema missing: %s", exc)
            return JSONResponse(
                {"error": "schema_missing", "message": "the indexer has not created its tables"},
                status_code=503,
            )
        except DB_ERRORS as exc:
            log.warning("database error on %s: %s", request.url.path, exc)
            return JSONResponse(
                {"error": "database_unavailable", "message": type(exc).__name__},
                status_code=503,
            )

    return wrapped


class SecurityHeaders:
    """ASGI middleware: nosniff everywhere, the CSP on HTML (the page may load only from here)."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                if headers.get("content-type", "").startswith("text/html"):
                    headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
                    headers["Cache-Control"] = "no-cache"
            await send(message)

        await self.app(scope, receive, send_with_headers)


def probe_app(app: Starlette) -> Starlette:
    """Only /healthz and /readyz of a dashboard app, for the HEALTH_PORT listener."""
    d: Dashboard = app.state.dashboard
    return Starlette(routes=[Route("/healthz", d.healthz), Route("/readyz", d.readyz)])


def create_app(settings: DashboardSettings, enable_feed: bool | None = None) -> Starlette:
    d = Dashboard(settings, enable_feed)
    api = _json_errors
    graphql = None
    if settings.dashboard_graphql:
        from services.dashboard.graphql.service import GraphQLService

        graphql = GraphQLService(settings, d.hub)  # fed by the same hub as /ws

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        async with d.lifespan(app):
            if graphql is None:
                yield
                return
            async with graphql.lifespan():
                yield

    routes = [
        Route("/", d.index),
        Route("/api/positions", api(d.positions)),
        Route("/api/positions/{token_id}", api(d.position)),
        Route("/api/markets", api(d.markets)),
        Route("/api/markets/{market:path}/funding", api(d.funding)),
        Route("/api/funding", api(d.funding)),
        Route("/api/liquidations", api(d.liquidations)),
        Route("/api/bridge/transfers", api(d.bridge)),
        Route("/api/governance", api(d.governance)),
        Route("/api/status", api(d.status)),
        Route("/healthz", d.healthz),
        Route("/readyz", d.readyz),
        WebSocketRoute("/ws", d.websocket),
        Mount("/static", StaticFiles(directory=STATIC_DIR), name="static"),
        *(graphql.routes() if graphql is not None else []),
    ]
    app = Starlette(routes=routes, lifespan=lifespan, middleware=[Middleware(SecurityHeaders)])
    app.state.dashboard = d
    app.state.graphql = graphql
    return app
