"""GraphQL's database side against a real PostgreSQL: a SELECT-only role (a write through it
fails), a dedicated login that could write is refused, and one snapshot per operation."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import httpx
import pytest
from dashboard_support import ETH, StartDashboard
from graphql_support import data, error

from services.dashboard.graphql.database import ReadOnlyDatabase, Snapshot

pytestmark = pytest.mark.integration

INSERT_MARKET = "INSERT INTO markets (market_id, pair) VALUES ('0xdead', 'X/Y')"


def _as_user(dsn: str, user: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit(parts._replace(netloc=f"{user}@{parts.hostname}:{parts.port}"))


async def _write(conn: asyncpg.Connection, statement: str) -> None:
    """`statement` in a READ WRITE transaction (sessions default to read-only)."""
    async with conn.transaction():
        await conn.execute("SET TRANSACTION READ WRITE")
        await conn.execute(statement)


@contextlib.asynccontextmanager
async def _login_role(dsn: str, grants: list[str]) -> AsyncIterator[str]:
    """A LOGIN role (no password: the test cluster trusts local connections) with `grants`."""
    role = f"t_role_{uuid.uuid4().hex[:8]}"
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"CREATE ROLE {role} LOGIN")
        await conn.execute(f"GRANT USAGE ON SCHEMA public TO {role}")
        for grant in grants:
            await conn.execute(grant.format(role=role))
        yield role
    finally:
        await conn.execute(f"DROP OWNED BY {role}")
        await conn.execute(f"DROP ROLE {role}")
        await conn.close()


async def test_graphql_reads_as_a_select_only_role_and_writes_fail(
    indexer_db: str, start_dashboard: StartDashboard
) -> None:
    running = await start_dashboard(indexer_db)
    async with httpx.AsyncClient(base_url=running.url, timeout=10) as c:
        assert len((await data(c, "{ markets { pair } }"))["markets"]) == 3
    db: ReadOnlyDatabase = running.app.state.graphql.db
    pool = await db.pool()
    async with pool.acquire() as conn:
        assert await conn.fetchval("SELECT current_user") == "perpex_graphql"
        assert await conn.fetchval("SHOW default_transaction_read_only") == "on"
        # even in a read-write transaction, and after RESET ROLE (back to the connection's
        # start-up role), the role may not write
        for prelude in ("", "RESET ROLE"):
            if prelude:
                await conn.execute(prelude)
            for statement in (INSERT_MARKET, "DELETE FROM positions", "TRUNCATE sync_status"):
                with pytest.raises(asyncpg.InsufficientPrivilegeError):
                    await _write(conn, statement)
        assert await conn.fetchval("SELECT count(*) FROM positions") == 8
    admin = await asyncpg.connect(indexer_db)
    try:
        role = await admin.fetchrow(
            "SELECT rolcanlogin, rolsuper FROM pg_roles WHERE rolname = 'perpex_graphql'"
        )
        assert role is not None and not role["rolcanlogin"] and not role["rolsuper"]
        assert await admin.fetchval("SELECT count(*) FROM markets WHERE pair = 'X/Y'") == 0
    finally:
        await admin.close()
    # a second dashboard finds the role there and sets it up again without error
    again = await start_dashboard(indexer_db)
    async with httpx.AsyncClient(base_url=again.url, timeout=10) as c:
        assert (await data(c, "{ syncStatus { indexedBlock } }"))["syncStatus"][
            "indexedBlock"
        ] == 63


async def test_a_dedicated_login_must_be_select_only(
    indexer_db: str, start_dashboard: StartDashboard
) -> None:
    tables = "markets, positions, liquidations, funding_updates, events, sync_status"
    async with _login_role(
        indexer_db,
        [f"GRANT SELECT ON {tables} TO {{role}}", "GRANT INSERT, DELETE ON positions TO {role}"],
    ) as writer:
        running = await start_dashboard(
            indexer_db, dashboard_graphql_db_uri=_as_user(indexer_db, writer)
        )
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as c:
            err = await error(c, "{ markets { pair } }")
        assert err["extensions"]["code"] == "READ_ONLY_ROLE"
        assert f"role {writer} can write positions (INSERT, DELETE)" in err["message"]
        await running.app.state.graphql.db.close()
    async with _login_role(indexer_db, [f"GRANT SELECT ON {tables} TO {{role}}"]) as reader:
        running = await start_dashboard(
            indexer_db, dashboard_graphql_db_uri=_as_user(indexer_db, reader)
        )
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as c:
            assert (
                len((await data(c, "{ positions { nodes { tokenId } } }"))["positions"]["nodes"])
                == 8
            )
        pool = await running.app.state.graphql.db.pool()
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT current_user") == reader
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await _write(conn, INSERT_MARKET)
        await running.app.state.graphql.db.close()


async def _insert_open_position(conn: asyncpg.Connection, token: int) -> None:
    """What the indexer does: a position row and sync_status in one transaction."""
    async with conn.transaction():
        await conn.execute(
            """INSERT INTO positions (token_id, market_id, market, owner, is_long, collateral,
                   leverage, size, notional, entry_price, entry_funding_index, open_fee, status,
                   opened_block, opened_timestamp, opened_tx, updated_block)
               VALUES ($1, $2, 'ETH/USDT', $3, true, 1, 1, 1, 1, 1, 0, 0, 'open', $4, $4, '0x',
                       $4)""",
            token,
            ETH,
            "0x" + "cc" * 20,
            token,
        )
        await conn.execute(
            "UPDATE sync_status SET last_synced_block = $1, updated_at = now()", token
        )


async def test_a_snapshot_does_not_see_later_commits(indexer_db: str) -> None:
    db = ReadOnlyDatabase(indexer_db, "perpex_graphql")
    writer = await asyncpg.connect(indexer_db)
    try:
        snapshot = Snapshot(db)
        assert await snapshot.fetchval("SELECT count(*) FROM positions") == 8
        await _insert_open_position(writer, 1000)
        assert await snapshot.fetchval("SELECT count(*) FROM positions") == 8
        assert await snapshot.fetchval("SELECT max(last_synced_block) FROM sync_status") == 63
        await snapshot.close()
        later = Snapshot(db)
        assert await later.fetchval("SELECT count(*) FROM positions") == 9
        await later.close()
    finally:
        await writer.close()
        await db.close()


async def test_every_field_of_an_operation_reads_the_same_snapshot(
    indexer_db: str, start_dashboard: StartDashboard
) -> None:
    """While positions are committed as fast as possible, the page, its total, the market
    stats and the sync status of one answer always agree."""
    running = await start_dashboard(indexer_db)
    query = """{
      positions(filter: {status: [OPEN]}, first: 500) { totalCount nodes { tokenId } }
      markets { openPositions }
      syncStatus { indexedBlock }
      again: positions(filter: {status: [OPEN]}, orderBy: TOKEN_ID, first: 500) {
        nodes { tokenId } }
    }"""
    stop = asyncio.Event()

    async def write() -> int:
        conn = await asyncpg.connect(indexer_db)
        token = 1000
        try:
            while not stop.is_set():
                token += 1
                await _insert_open_position(conn, token)
                await asyncio.sleep(0)
        finally:
            await conn.close()
        return token - 1000

    writer = asyncio.create_task(write())
    seen = set()
    try:
        async with httpx.AsyncClient(base_url=running.url, timeout=10) as c:
            for _ in range(40):
                d = await data(c, query)
                nodes = d["positions"]["nodes"]
                open_ids = sorted(n["tokenId"] for n in nodes)
                assert d["positions"]["totalCount"] == len(nodes)
                assert sum(m["openPositions"] for m in d["markets"]) == len(nodes)
                assert sorted(n["tokenId"] for n in d["again"]["nodes"]) == open_ids
                newest = max(open_ids)
                # the sync status moved in the same commits as the rows
                assert d["syncStatus"]["indexedBlock"] == (newest if newest >= 1000 else 63)
                seen.add(len(nodes))
    finally:
        stop.set()
        written = await writer
    assert written > 40 and len(seen) > 5, (written, seen)  # the writer really raced the reads
