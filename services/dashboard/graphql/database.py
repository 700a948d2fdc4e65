"""GraphQL's database access: a SELECT-only role and one snapshot per operation.

Every GraphQL connection runs as a role that may only read the indexer's tables:

* DASHBOARD_GRAPHQL_DB_URI set: its (login) role, provisioned by the operator
  (docs/graphql.md has the SQL);
* otherwise the dashboard creates, idempotently, a NOLOGIN role (DASHBOARD_GRAPHQL_ROLE,
  `perpex_graphql`) with USAGE on the schema and SELECT on those tables, grants it to DB_URI's
  user and connects with DB_URI naming that role in the connection's start-up parameters, so
  every statement of the session runs with the role's privileges (RESET ROLE falls back to it).

Either way the dashboard checks, before serving, that the role can read each table and can
neither write nor is a superuser; it refuses to serve GraphQL otherwise.

`Snapshot`: one REPEATABLE READ READ ONLY transaction, opened at the operation's first query and
shared by all its resolvers (they take turns on the one connection), so a response never mixes
two states of the indexer's tables.
"""

from __future__ import annotations

import asyncio
import logging
import re
from typing import Any

import asyncpg

from shared.config import redact_dsn
from shared.readmodel.tables import READ_TABLES

log = logging.getLogger("perpex.dashboard.graphql")

WRITE_PRIVILEGES = ("INSERT", "UPDATE", "DELETE", "TRUNCATE")
ROLE_RE = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")
ROLE_LOCK_KEY = 0x5045_5250_4751_4C  # "PERPGQL"


class GraphQLDatabaseError(RuntimeError):
    """The read-only role cannot be set up or is not read-only; the message says why."""


def ensure_role_sql(role: str) -> list[str]:
    """Statements creating `role` (NOLOGIN, SELECT on READ_TABLES) idempotently (pure)."""
    if not ROLE_RE.match(role):
        raise ValueError(f"{role!r} is not a plain lower-case role name")
    tables = ", ".join(READ_TABLES)
    return [
        f"""DO $$ BEGIN
              IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '{role}') THEN
                CREATE ROLE {role} NOLOGIN;
              END IF;
            END $$""",
        f"GRANT USAGE ON SCHEMA public TO {role}",
        f"GRANT SELECT ON {tables} TO {role}",
        f"GRANT {role} TO CURRENT_USER",
    ]


PRIVILEGES_SQL = """
SELECT t AS table_name,
       has_table_privilege(current_user, t, 'SELECT') AS can_read,
       ARRAY(SELECT p FROM unnest($2::text[]) AS p WHERE has_table_privilege(current_user, t, p))
           AS writes,
       (SELECT rolsuper FROM pg_roles WHERE rolname = current_user) AS superuser,
       current_user AS role
FROM unnest($1::text[]) AS t
"""


def check_privileges(rows: list[Any]) -> None:
    """Raise GraphQLDatabaseError unless the role reads every table and writes none (pure)."""
    if not rows:
        return
    role = rows[0]["role"]
    if rows[0]["superuser"]:
        raise GraphQLDatabaseError(f"role {role} is a superuser; GraphQL needs a SELECT-only role")
    unreadable = [r["table_name"] for r in rows if not r["can_read"]]
    if unreadable:
        raise GraphQLDatabaseError(f"role {role} cannot read {', '.join(unreadable)}")
    writable = [f"{r['table_name']} ({', '.join(r['writes'])})" for r in rows if r["writes"]]
    if writable:
        raise GraphQLDatabaseError(
            f"role {role} can write {'; '.join(writable)}; GraphQL needs a SELECT-only role"
        )


class ReadOnlyDatabase:
    def __init__(
        self,
        db_uri: str,
        role: str,
        dedicated_uri: str | None = None,
        pool_size: int = 10,
        statement_timeout_ms: int = 5000,
    ):
        self.db_uri = db_uri
        self.role = role
        self.dedicated_uri = dedicated_uri
        self.pool_size = pool_size
        self.statement_timeout_ms = statement_timeout_ms
        self._pool: asyncpg.Pool | None = None
        self._lock = asyncio.Lock()

    @property
    def where(self) -> str:
        """For messages: which DSN (password masked) and role."""
        if self.dedicated_uri:
            return f"DASHBOARD_GRAPHQL_DB_URI {redact_dsn(self.dedicated_uri)}"
        return f"role {self.role} on {redact_dsn(self.db_uri)}"

    async def pool(self) -> asyncpg.Pool:
        """The read-only pool; the role is set up and checked on first use (and again after a
        failure, e.g. while the indexer has not created its tables yet)."""
        if self._pool is not None:
            return self._pool
        async with self._lock:
            if self._pool is None:
                self._pool = await self._open()
        return self._pool

    async def _open(self) -> asyncpg.Pool:
        settings = {
            "default_transaction_read_only": "on",
            "statement_timeout": str(self.statement_timeout_ms),
            "application_name": "perpex-dashboard-graphql",
        }
        if self.dedicated_uri is None:
            await self._ensure_role()
            settings["role"] = self.role
        pool = await asyncpg.create_pool(
            self.dedicated_uri or self.db_uri,
            min_size=0,
            max_size=self.pool_size,
            timeout=5,
            server_settings=settings,
            # Sessions only ever run SELECTs in transactions the snapshot ends itself: nothing
            # to reset on release (asyncpg's default reset is one more round trip per use).
            reset=_keep_session,
        )
        assert pool is not None
        try:
            async with pool.acquire() as conn:
                rows = await conn.fetch(PRIVILEGES_SQL, list(READ_TABLES), list(WRITE_PRIVILEGES))
            check_privileges(list(rows))
        except BaseException:
            await pool.close()
            raise
        log.info("GraphQL reads as %s (SELECT only)", self.where)
        return pool

    async def _ensure_role(self) -> None:
        conn = await asyncpg.connect(self.db_uri, timeout=5)
        try:
            async with conn.transaction():
                # replicas starting together: one creates the role, the others wait
                await conn.execute("SELECT pg_advisory_xact_lock($1)", ROLE_LOCK_KEY)
                for statement in ensure_role_sql(self.role):
                    await conn.execute(statement)
        except asyncpg.InsufficientPrivilegeError as exc:
            raise GraphQLDatabaseError(
                f"DB_URI's user may not create or grant role {self.role} ({exc}); create it "
                "once as an administrator (docs/graphql.md) or set DASHBOARD_GRAPHQL_DB_URI to "
                "a SELECT-only login"
            ) from None
        finally:
            await conn.close()

    async def close(self) -> None:
        pool, self._pool = self._pool, None
        if pool is not None:
            try:  # connections still out (an operation cut short) must not hold up a shutdown
                await asyncio.wait_for(pool.close(), 5)
            except TimeoutError:
                pool.terminate()


async def _keep_session(_: asyncpg.Connection) -> None:
    return None


class Snapshot:
    """One read-only REPEATABLE READ transaction for a GraphQL operation, opened lazily."""

    def __init__(self, db: ReadOnlyDatabase):
        self._db = db
        self._conn: Any = None
        self._tx: Any = None
        self._lock = asyncio.Lock()
        self.queries = 0

    async def fetch(self, sql: str, *args: Any) -> list[asyncpg.Record]:
        async with self._lock:
            conn = await self._open()
            self.queries += 1
            return list(await conn.fetch(sql, *args))

    async def fetchval(self, sql: str, *args: Any) -> Any:
        async with self._lock:
            conn = await self._open()
            self.queries += 1
            return await conn.fetchval(sql, *args)

    async def _open(self) -> asyncpg.Connection:
        if self._conn is None:
            pool = await self._db.pool()
            conn = await pool.acquire()
            try:
                tx = conn.transaction(isolation="repeatable_read", readonly=True)
                await tx.start()
            except BaseException:
                await pool.release(conn)
                raise
            self._conn, self._tx = conn, tx
        return self._conn  # type: ignore[no-any-return]

    async def close(self) -> None:
        """End the transaction (nothing to commit) and give the connection back."""
        conn, tx = self._conn, self._tx
        self._conn = self._tx = None
        if conn is None:
            return
        pool = await self._db.pool()
        try:
            if not conn.is_closed():
                await tx.rollback()
        except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
            log.debug("ending a GraphQL snapshot failed: %s", exc)
        finally:
            await pool.release(conn)
