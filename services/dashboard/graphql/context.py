"""Per-operation state and errors of the GraphQL API.

Strawberry builds one context per HTTP request but only one per WebSocket connection, whose
operations may run at the same time. `OperationScope` (a schema extension, one instance per
operation) therefore gives each operation a context of its own: its `Snapshot` (one read-only
transaction shared by all its resolvers) and its batch loaders. It also refuses an operation
whose estimated cost is over the limit before anything is read.
"""

from __future__ import annotations

import asyncio
import logging
from collections import defaultdict
from collections.abc import AsyncIterator, Hashable, Iterable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import asyncpg
import orjson
from graphql import ExecutionResult, GraphQLError
from strawberry.dataloader import DataLoader
from strawberry.extensions import SchemaExtension
from strawberry.types.graphql import OperationType

from services.dashboard.formatting import format_position_event
from services.dashboard.graphql.database import GraphQLDatabaseError, Snapshot
from services.dashboard.graphql.limits import operation_cost, root_fields
from services.dashboard.params import ParamError, PositionFilter
from services.dashboard.repository import POSITION_GROUPS_SQL, groups_answer, total_from_groups
from shared.readmodel.queries import POSITIONS_EVENTS_SQL

if TYPE_CHECKING:
    from services.dashboard.graphql.service import GraphQLService

log = logging.getLogger("perpex.dashboard.graphql")


def bad_input(param: str, message: str) -> GraphQLError:
    """A client error naming the argument (the REST API's 400 `bad_parameter`)."""
    return GraphQLError(
        f"{param}: {message}", extensions={"code": "BAD_USER_INPUT", "param": param}
    )


def from_param_error(exc: ParamError, prefix: str = "") -> GraphQLError:
    return bad_input(f"{prefix}{exc.param}", exc.message)


def database_error(exc: BaseException) -> GraphQLError:
    """A database failure as a GraphQL error that says what is wrong, never a DSN."""
    if isinstance(exc, asyncpg.UndefinedTableError):
        return GraphQLError(
            "the indexer has not created its tables yet", extensions={"code": "SCHEMA_MISSING"}
        )
    if isinstance(exc, asyncpg.QueryCanceledError):
        return GraphQLError(
            "the query ran longer than DASHBOARD_GRAPHQL_TIMEOUT_MS; ask for less",
            extensions={"code": "TIMEOUT"},
        )
    if isinstance(exc, GraphQLDatabaseError):
        return GraphQLError(
            f"GraphQL's read-only database role is unavailable: {exc}",
            extensions={"code": "READ_ONLY_ROLE"},
        )
    return GraphQLError(
        f"database unavailable ({type(exc).__name__})",
        extensions={"code": "DATABASE_UNAVAILABLE"},
    )


DB_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresError,
    asyncpg.InterfaceError,
    GraphQLDatabaseError,
)


class OperationSnapshot:
    """Snapshot whose failures are GraphQL errors (one choke point for every resolver)."""

    def __init__(self, snapshot: Snapshot):
        self._snapshot = snapshot
        self.closed = False

    async def fetch(self, sql: str, *args: Any) -> list[Any]:
        self._check()
        try:
            return await self._snapshot.fetch(sql, *args)
        except DB_ERRORS as exc:
            log.warning("GraphQL query failed: %s: %s", type(exc).__name__, exc)
            raise database_error(exc) from None

    async def fetchval(self, sql: str, *args: Any) -> Any:
        self._check()
        try:
            return await self._snapshot.fetchval(sql, *args)
        except DB_ERRORS as exc:
            log.warning("GraphQL query failed: %s: %s", type(exc).__name__, exc)
            raise database_error(exc) from None

    def _check(self) -> None:
        if self.closed:
            raise GraphQLError("this operation's database snapshot is already closed")

    async def close(self) -> None:
        self.closed = True
        await self._snapshot.close()


@dataclass
class ConnectionContext:
    """What strawberry's view builds per request / WebSocket connection."""

    service: GraphQLService
    request: Any
    response: Any = None
    connection_params: Any = None


@dataclass
class OperationContext:
    service: GraphQLService
    snapshot: OperationSnapshot
    connection: ConnectionContext
    _loaders: dict[str, DataLoader[Any, Any]] = field(default_factory=dict)

    _version: tuple[Any, ...] | None = None

    @property
    def settings(self) -> Any:
        return self.service.settings

    async def data_version(self) -> tuple[Any, ...]:
        """Which indexer commit this operation's snapshot sees: the indexer moves sync_status in
        the same transaction as every row it writes (a chunk, a reorg's rollback)."""
        if self._version is None:
            self._version = version_of(await self.snapshot.fetch(DATA_VERSION_SQL))
        return self._version

    async def count(self, sql: str, args: list[Any]) -> int:
        """A count query's answer, shared by every operation that sees the same indexer commit
        (so the same rows): one count per filter per commit, however many clients ask."""
        key = ("count", await self.data_version(), sql, _frozen(args))

        async def compute() -> int:
            return int(await self.snapshot.fetchval(sql, *args))

        return await self.service.counts.get(key, compute)  # type: ignore[no-any-return]

    async def position_total(self, f: PositionFilter, sql: str, args: list[Any]) -> int:
        """positions' totalCount: from the per-(market, status) counts when the filter allows
        (one scan per commit for all such filters), else its own count query."""
        if not groups_answer(f):
            return await self.count(sql, args)
        key = ("position_groups", await self.data_version())

        async def compute() -> list[Any]:
            return await self.snapshot.fetch(POSITION_GROUPS_SQL)

        groups = await self.service.counts.get(key, compute)
        return total_from_groups(groups, f)

    async def events_of(self, token_id: int) -> list[dict[str, Any]]:
        loader = self._loaders.get("events")
        if loader is None:
            loader = self._loaders["events"] = DataLoader(load_fn=self._load_events)
        return await loader.load(token_id)  # type: ignore[no-any-return]

    async def _load_events(self, token_ids: Iterable[int]) -> list[list[dict[str, Any]]]:
        ids = list(token_ids)
        by_token: dict[int, list[dict[str, Any]]] = defaultdict(list)
        for row in await self.snapshot.fetch(POSITIONS_EVENTS_SQL, ids):
            by_token[int(row["token_id"])].append(format_position_event(row))
        return [by_token.get(t, []) for t in ids]


# root fields whose answer is a function of the tables alone (syncStatus depends on the clock
# and the chain head)
CACHEABLE_ROOTS = frozenset(
    {"positions", "position", "markets", "market", "liquidations", "fundingUpdates"}
)
DATA_VERSION_SQL = """
SELECT contract_address, last_synced_block, last_synced_hash, updated_at
FROM sync_status ORDER BY contract_address
"""


def version_of(rows: Iterable[Any]) -> tuple[Any, ...]:
    return tuple(tuple(r) for r in rows)


def _frozen(value: Any) -> Any:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    return value


class OperationScope(SchemaExtension):
    """Per operation: the cost check, then a context with its own lazily opened snapshot,
    closed when execution ends."""

    def __init__(self, *, max_cost: int, execution_context: Any = None):
        self.max_cost = max_cost

    async def on_execute(self) -> AsyncIterator[None]:
        ec = self.execution_context
        connection = ec.context
        if not isinstance(connection, ConnectionContext):  # e.g. schema.execute in tests
            yield
            return
        if ec.operation_type is not OperationType.SUBSCRIPTION and ec.graphql_document:
            cost = operation_cost(ec.graphql_document, ec.operation_name, ec.variables or {})
            if cost > self.max_cost:
                raise GraphQLError(
                    f"query cost {cost} is over the limit of {self.max_cost} "
                    "(DASHBOARD_GRAPHQL_MAX_COST): ask for fewer rows (`first`) or fewer "
                    "nested lists",
                    extensions={"code": "COST_LIMIT", "cost": cost, "limit": self.max_cost},
                )
        service = connection.service
        key = self._cache_key()
        leader: asyncio.Future[Any] | None = None
        if key is not None:
            try:
                version = await service.data_version()
            except DB_ERRORS as exc:
                raise database_error(exc) from None
            data = service.results.peek((key, version))
            if data is None:
                # The same operation already running (clients re-reading after the same
                # commit): wait for its answer instead of computing it again.
                running = service.running.get((key, version))
                if running is not None:
                    data = await asyncio.shield(running)
                else:
                    leader = service.running[(key, version)] = (
                        asyncio.get_running_loop().create_future()
                    )
            if data is not None:  # the same operation, and the indexer has not committed since
                ec.result = ExecutionResult(data=data)
                yield
                return
        snapshot = OperationSnapshot(Snapshot(service.db))
        op = ec.context = OperationContext(service, snapshot, connection)
        answer = None
        try:
            yield
            result = ec.result
            if key is not None and isinstance(result, ExecutionResult) and not result.errors:
                answer = result.data
                # keyed by the commit its snapshot saw, which may be newer than `version`
                service.results.put((key, await op.data_version()), answer)
        finally:
            if leader is not None:
                del service.running[(key, version)]
                leader.set_result(answer)  # None: the waiters run the operation themselves
            await snapshot.close()

    def _cache_key(self) -> Hashable | None:
        """Answers of fields that depend on the tables alone are shared between operations
        asking the same thing at the same indexer commit (the data version)."""
        ec = self.execution_context
        if ec.operation_type is not OperationType.QUERY or not ec.graphql_document or not ec.query:
            return None
        fields = root_fields(ec.graphql_document, ec.operation_name)
        if not fields or not fields <= CACHEABLE_ROOTS:
            return None
        variables = orjson.dumps(ec.variables or {}, option=orjson.OPT_SORT_KEYS)
        return (ec.query, ec.operation_name, variables)
