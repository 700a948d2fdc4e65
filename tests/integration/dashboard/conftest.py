"""Dashboard integration fixtures: the indexer's real schema in a fresh database with known rows,
and the real app under uvicorn (the services' embedded server, shared/http_server.py) on a free
port."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
from dashboard_support import INDEXER_MIGRATIONS, Running, StartDashboard, seed

from services.dashboard.app import create_app
from services.dashboard.settings import load_dashboard_settings
from shared.db import apply_migrations
from shared.http_server import EmbeddedServer


@pytest.fixture
async def indexer_db(fresh_db: str) -> str:
    """A fresh database with the indexer's schema (its own migrations) and the seeded rows."""
    conn = await asyncpg.connect(fresh_db)
    try:
        await apply_migrations(conn, INDEXER_MIGRATIONS)
        await seed(conn)
    finally:
        await conn.close()
    return fresh_db


@pytest.fixture
async def start_dashboard(kafka_bootstrap: str) -> AsyncIterator[StartDashboard]:
    """Start the real app under uvicorn on a free port; every server stops after the test."""
    servers: list[tuple[EmbeddedServer, asyncio.Task[None]]] = []

    async def start(db_uri: str, topic: str | None = None, **settings: Any) -> Running:
        cfg = load_dashboard_settings(
            db_uri=db_uri,
            kafka_bootstrap_servers=kafka_bootstrap,
            kafka_topic=topic or "unused",
            dashboard_kafka_feed=topic is not None,
            _env_file=None,
            **settings,
        )
        app = create_app(cfg)
        server = EmbeddedServer(app, "127.0.0.1", 0, lifespan="on")
        task = asyncio.create_task(server.serve_until_stopped())
        servers.append((server, task))
        for _ in range(500):
            if server.started or task.done():
                break
            await asyncio.sleep(0.01)
        assert server.started and server.bound_port, "dashboard did not start"
        port = server.bound_port
        return Running(f"http://127.0.0.1:{port}", app)

    yield start
    for server, _ in servers:
        server.request_stop()
    for _, task in servers:
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 10)
