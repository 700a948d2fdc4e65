"""`/graphql` on the dashboard: queries and mutations-free reads over HTTP (POST, or GET for
queries), subscriptions over WebSocket (graphql-transport-ws, and the older graphql-ws)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import orjson
from starlette.routing import BaseRoute, Route, WebSocketRoute
from strawberry.asgi import GraphQL

from services.dashboard.cache import QueryCache
from services.dashboard.graphql.context import (
    DATA_VERSION_SQL,
    DB_ERRORS,
    ConnectionContext,
    version_of,
)
from services.dashboard.graphql.database import ReadOnlyDatabase
from services.dashboard.graphql.limits import Limits
from services.dashboard.graphql.schema import build_schema
from services.dashboard.graphql.sync import ChainHead
from services.dashboard.hub import Hub
from services.dashboard.settings import DashboardSettings

PATH = "/graphql"
CACHE_TTL_S = 30.0  # entries are keyed by indexer commit; the TTL only bounds memory
log = logging.getLogger("perpex.dashboard.graphql")


def limits_of(settings: DashboardSettings) -> Limits:
    return Limits(
        max_depth=settings.dashboard_graphql_max_depth,
        max_cost=settings.dashboard_graphql_max_cost,
        max_aliases=settings.dashboard_graphql_max_aliases,
        max_tokens=settings.dashboard_graphql_max_tokens,
    )


class GraphQLView(GraphQL):  # type: ignore[type-arg]
    def __init__(self, service: GraphQLService, **kwargs: Any):
        super().__init__(service.schema, **kwargs)
        self.service = service

    def encode_json(self, data: object) -> bytes:  # type: ignore[override]
        return orjson.dumps(data)

    async def get_context(self, request: Any, response: Any) -> ConnectionContext:  # type: ignore[override]
        return ConnectionContext(self.service, request, response)


class GraphQLService:
    def __init__(self, settings: DashboardSettings, hub: Hub):
        self.settings = settings
        self.hub = hub
        self.db = ReadOnlyDatabase(
            settings.db_uri,
            settings.dashboard_graphql_role,
            settings.dashboard_graphql_db_uri,
            pool_size=settings.dashboard_graphql_pool_size,
            statement_timeout_ms=settings.dashboard_graphql_timeout_ms,
        )
        # totals keyed by the indexer commit they were counted at (context.OperationContext)
        self.counts = QueryCache(ttl=CACHE_TTL_S, max_entries=1024)
        # whole answers, keyed the same way (context.OperationScope)
        self.results = QueryCache(ttl=CACHE_TTL_S, max_entries=512)
        # the current data version, one read shared by the operations that ask meanwhile
        self.versions = QueryCache(ttl=0)
        # operations being computed, by (cache key, data version): identical ones wait for it
        self.running: dict[Any, asyncio.Future[Any]] = {}
        self.head = ChainHead(settings.rpc_url) if settings.dashboard_rpc_head else None
        self.schema = build_schema(limits_of(settings))
        self.view = GraphQLView(
            self,
            graphql_ide=None,  # GraphiQL loads from a CDN, which the page's CSP forbids
            keep_alive=True,
            keep_alive_interval=15,
            connection_init_wait_timeout=timedelta(seconds=10),
            max_subscriptions_per_connection=settings.dashboard_graphql_max_subscriptions,
        )

    async def data_version(self) -> tuple[Any, ...]:
        """The indexer commit the database is at now (context.OperationContext.data_version)."""

        async def read() -> tuple[Any, ...]:
            pool = await self.db.pool()
            async with pool.acquire() as conn:
                return version_of(await conn.fetch(DATA_VERSION_SQL))

        return await self.versions.get("version", read)  # type: ignore[no-any-return]

    def stats(self) -> dict[str, Any]:
        return {"results_cache": self.results.stats(), "counts_cache": self.counts.stats()}

    def routes(self) -> list[BaseRoute]:
        return [Route(PATH, self.view), WebSocketRoute(PATH, self.view)]

    async def _prepare(self) -> None:
        """Set up and check the read-only role at start, so a problem shows in the log at
        once; on failure GraphQL retries it at its next query (and answers what failed)."""
        try:
            await self.db.pool()
        except DB_ERRORS as exc:
            log.warning("GraphQL not ready yet (%s): %s", type(exc).__name__, exc)

    @contextlib.asynccontextmanager
    async def lifespan(self) -> AsyncIterator[None]:
        prepare = asyncio.create_task(self._prepare(), name="graphql-prepare")
        try:
            yield
        finally:
            prepare.cancel()
            with contextlib.suppress(BaseException):
                await prepare
            await self.db.close()
            if self.head is not None:
                await self.head.close()
