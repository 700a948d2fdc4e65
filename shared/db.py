"""PostgreSQL helpers: a connection pool and a versioned migration runner.

Migrations are files named `NNNN_description.sql` in a folder; each runs once, in order, in its
own transaction, recorded in `schema_migrations`. An advisory lock makes concurrent starters
(several replicas) apply them exactly once.
"""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

MIGRATION_LOCK_KEY = 0x5045_5250_4D49_47  # "PERPMIG"
MIGRATION_NAME_RE = re.compile(r"^(\d{4})_[\w\-]+\.sql$")


async def create_pool(dsn: str, min_size: int = 1, max_size: int = 10) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size)
    assert pool is not None
    return pool


def discover_migrations(folder: Path) -> list[tuple[int, str, Path]]:
    found: list[tuple[int, str, Path]] = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_NAME_RE.match(path.name)
        if not match:
            raise ValueError(f"migration file {path.name} is not named NNNN_description.sql")
        found.append((int(match.group(1)), path.stem, path))
    versions = [v for v, _, _ in found]
    if len(versions) != len(set(versions)):
        raise ValueError(f"duplicate migration versions in {folder}")
    return found


async def apply_migrations(conn: asyncpg.Connection, folder: Path) -> list[str]:
    """Apply pending migrations from `folder`. Returns the names applied now."""
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
        for version, name, path in discover_migrations(folder):
            if version in done:
                continue
            async with conn.transaction():
                await conn.execute(path.read_text())
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", version, name
                )
            applied_now.append(name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK_KEY)
    return applied_now
