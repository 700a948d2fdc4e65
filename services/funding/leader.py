"""One writer among updater replicas: leader election behind one small interface.

- `PostgresAdvisoryLeader` (LEADER_ELECTION=postgres, local and anywhere replicas share a
  database): `pg_try_advisory_lock` on a dedicated connection held while leading. The lock
  belongs to that session, so a lost connection is lost leadership: the server frees the lock
  when the session ends, and we drop leadership as soon as we notice (termination callback,
  failed health query, or the check made right before every send).
- `KubernetesLeaseLeader` (LEADER_ELECTION=kubernetes): a coordination.k8s.io/v1 Lease, renewed
  well inside its duration; see lease.py for the protocol.
- `NoLeader` (LEADER_ELECTION=none): a single replica, always the leader.

Every elector runs a background loop (`start`/`stop`), exposes `is_leader`, calls listeners
when leadership changes, and answers `confirm()` - a live check made right before sending.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import asyncpg

from services.funding import lease as lz

log = logging.getLogger(__name__)

Listener = Callable[[bool], None]


class LeaderElector(abc.ABC):
    kind = "abstract"

    def __init__(self, name: str, retry_s: float = 2.0, clock: Callable[[], float] | None = None):
        self.name = name
        self.retry_s = retry_s
        self.clock = clock or time.monotonic
        self._leading = False
        self._listeners: list[Listener] = []
        self._task: asyncio.Task[None] | None = None
        self._kick = asyncio.Event()
        self.transitions = 0
        self.last_error: str | None = None

    # ---- public ----
    @property
    def is_leader(self) -> bool:
        return self._leading

    def add_listener(self, listener: Listener) -> None:
        self._listeners.append(listener)

    async def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._loop(), name=f"leader:{self.name}")

    async def stop(self) -> None:
        """Stop campaigning and release leadership (if held)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(BaseException):
                await self._task
            self._task = None
        was = self._leading
        try:
            await self._release(was)
        except Exception as exc:
            log.warning("releasing leadership %s failed: %s", self.name, exc)
        self._set(False, "stopped")

    async def wait_until_leader(self, within: float | None = None) -> bool:
        deadline = None if within is None else self.clock() + within
        while not self._leading:
            if deadline is not None and self.clock() >= deadline:
                return False
            await asyncio.sleep(0.05)
        return True

    def status(self) -> dict[str, Any]:
        return {
            "election": self.kind,
            "name": self.name,
            "leader": self._leading,
            "transitions": self.transitions,
            "last_error": self.last_error,
        }

    @abc.abstractmethod
    async def confirm(self) -> bool:
        """True when leadership holds right now (a live check, made before each send)."""

    # ---- for implementations ----
    @abc.abstractmethod
    async def _step(self) -> None:
        """One campaign round: acquire, renew or observe."""

    async def _release(self, was_leader: bool) -> None:
        return None

    def _set(self, leading: bool, why: str) -> None:
        if leading == self._leading:
            return
        self._leading = leading
        self.transitions += 1
        if leading:
            log.info("leadership %s acquired (%s)", self.name, why)
        elif why == "stopped":
            log.info("leadership %s released", self.name)
        else:
            log.warning("leadership %s lost (%s)", self.name, why)
        for listener in list(self._listeners):
            try:
                listener(leading)
            except Exception:
                log.exception("leadership listener failed")

    async def _loop(self) -> None:
        while True:
            try:
                await self._step()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("leader election %s: %s", self.name, self.last_error)
                await self._on_error()
            self._kick.clear()
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._kick.wait(), self.retry_s)

    async def _on_error(self) -> None:
        self._set(False, f"election error: {self.last_error}")


class NoLeader(LeaderElector):
    """LEADER_ELECTION=none: the only replica; always leads."""

    kind = "none"

    def __init__(self, name: str = "single") -> None:
        super().__init__(name)
        self._leading = True

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    async def confirm(self) -> bool:
        return True

    async def _step(self) -> None:
        return None


def advisory_key(name: str) -> int:
    """A stable signed 64-bit advisory-lock key for an election name."""
    digest = hashlib.blake2b(f"perpex-funding-leader:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


class PostgresAdvisoryLeader(LeaderElector):
    kind = "postgres"

    def __init__(
        self,
        dsn: str,
        name: str,
        retry_s: float = 2.0,
        timeout_s: float = 5.0,
        clock: Callable[[], float] | None = None,
    ):
        super().__init__(name, retry_s, clock)
        self.dsn = dsn
        self.key = advisory_key(name)
        self.timeout_s = timeout_s
        self._conn: asyncpg.Connection | None = None
        self._lock = asyncio.Lock()

    async def _connection(self) -> asyncpg.Connection:
        if self._conn is None or self._conn.is_closed():
            conn = await asyncpg.connect(
                self.dsn, timeout=self.timeout_s, server_settings={"application_name": self.name}
            )
            conn.add_termination_listener(self._on_terminated)
            self._conn = conn
        return self._conn

    def _on_terminated(self, conn: Any) -> None:
        if conn is self._conn:
            self._set(False, "database connection closed")

    async def _step(self) -> None:
        async with self._lock:
            conn = await self._connection()
            if self._leading:
                # The lock lives as long as this session; a round trip proves the session does.
                await conn.fetchval("SELECT 1", timeout=self.timeout_s)
                return
            got = await conn.fetchval(
                "SELECT pg_try_advisory_lock($1)", self.key, timeout=self.timeout_s
            )
            if got:
                self._set(True, f"advisory lock {self.key} taken")

    async def _on_error(self) -> None:
        await super()._on_error()
        await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.terminate()  # ends the session, so the server frees the lock

    async def confirm(self) -> bool:
        if not self._leading:
            return False
        try:
            async with self._lock:
                if self._conn is None or self._conn.is_closed():
                    raise ConnectionError("lock connection is gone")
                await self._conn.fetchval("SELECT 1", timeout=self.timeout_s)
            return self._leading
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            self._set(False, f"lock session check failed: {self.last_error}")
            await self._drop()
            return False

    async def _release(self, was_leader: bool) -> None:
        conn, self._conn = self._conn, None
        if conn is None or conn.is_closed():
            return
        try:
            if was_leader:
                await conn.fetchval("SELECT pg_advisory_unlock($1)", self.key, timeout=2.0)
        finally:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), 2.0)


# ---------------------------------------------------------------- Kubernetes Lease


class LeaseConflict(Exception):
    """The API server refused a write based on a stale read (HTTP 409)."""


class LeaseClient(Protocol):
    async def get(self, namespace: str, name: str) -> dict[str, Any] | None: ...

    async def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]: ...

    async def close(self) -> None: ...


class KubeLeaseClient:
    """Leases through the operator's thin Kubernetes REST client (in-cluster ServiceAccount
    credentials, a kubeconfig, or a plain URL such as a `kubectl proxy` or a test emulator)."""

    def __init__(self, api: Any):
        from shared.kube import Kind

        self._api = api
        self._kind = Kind(lz.LEASE_API_VERSION, "leases")

    @classmethod
    async def connect(cls, api_url: str | None) -> KubeLeaseClient:
        from shared.kube import KubeApi

        api = KubeApi.for_host(api_url) if api_url else await KubeApi.from_environment()
        return cls(api)

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._call(self._api.get(self._kind, namespace, name))

    async def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        obj = {**body, "metadata": {**body["metadata"], "namespace": namespace}}
        return dict(await self._call(self._api.create(obj, self._kind)))

    async def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        result = await self._call(self._api.patch(self._kind, namespace, name, body))
        if result is None:
            raise LeaseConflict(f"lease {namespace}/{name} disappeared")
        return result

    async def close(self) -> None:
        await self._api.close()

    @staticmethod
    async def _call(awaitable: Any) -> Any:
        from shared.kube import KubeError

        try:
            return await awaitable
        except KubeError as exc:
            if exc.status in (409, 422):
                raise LeaseConflict(str(exc)) from None
            raise


class KubernetesLeaseLeader(LeaderElector):
    kind = "kubernetes"

    def __init__(
        self,
        client: LeaseClient,
        namespace: str,
        name: str,
        identity: str,
        duration_s: int = 15,
        renew_deadline_s: float = 10.0,
        retry_s: float = 2.0,
        clock: Callable[[], float] | None = None,
        wall: Callable[[], dt.datetime] | None = None,
    ):
        if not retry_s < renew_deadline_s < duration_s:
            raise ValueError("need retry period < renew deadline < lease duration")
        super().__init__(name, retry_s, clock)
        self.client = client
        self.namespace = namespace
        self.identity = identity
        self.duration_s = duration_s
        self.renew_deadline_s = renew_deadline_s
        self.wall = wall or (lambda: dt.datetime.now(dt.UTC))
        self._observer = lz.Observer()
        self._record: lz.LeaseRecord | None = None
        self._renewed_at: float | None = None
        self._lock = asyncio.Lock()

    @property
    def is_leader(self) -> bool:
        if self._leading and not lz.still_leading(
            self._renewed_at, self.renew_deadline_s, self.clock()
        ):
            self._set(False, "lease not renewed within the renew deadline")
        return self._leading

    async def _step(self) -> None:
        async with self._lock:
            await self._round()

    async def _round(self) -> None:
        now = self.clock()
        obj = await self.client.get(self.namespace, self.name)
        record = lz.LeaseRecord.from_object(obj) if obj is not None else None
        observed_at = self._observer.observe(record, now)
        decision = lz.plan(record, self.identity, observed_at, now)
        try:
            if decision.step is lz.Step.CREATE:
                written = await self.client.create(
                    self.namespace,
                    lz.new_lease(
                        self.name, self.namespace, self.identity, self.duration_s, self.wall()
                    ),
                )
            elif decision.step is lz.Step.RENEW:
                assert record is not None
                written = await self.client.patch(
                    self.namespace, self.name, lz.renew_patch(record, self.duration_s, self.wall())
                )
            elif decision.step is lz.Step.TAKE_OVER:
                assert record is not None
                written = await self.client.patch(
                    self.namespace,
                    self.name,
                    lz.take_over_patch(record, self.identity, self.duration_s, self.wall()),
                )
            else:
                self._record = record
                self._set(False, f"held by {record.holder if record else '?'}")
                return
        except LeaseConflict as exc:
            log.info("lease %s: lost a race (%s)", self.name, exc)
            self._set(False, "lease written by another candidate")
            return
        self._record = lz.LeaseRecord.from_object(written)
        self._observer.observe(self._record, now)
        if self._record.holder != self.identity:
            self._set(False, f"held by {self._record.holder}")
            return
        self._renewed_at = now
        self._set(True, f"lease {self.namespace}/{self.name} {decision.step.value}")

    async def _on_error(self) -> None:
        # An API error is not a lost lease: keep leading until the renew deadline passes.
        if not self.is_leader:
            self._set(False, f"election error: {self.last_error}")

    async def confirm(self) -> bool:
        if not self.is_leader:
            return False
        try:
            async with self._lock:
                await self._round()
        except Exception as exc:
            self.last_error = f"{type(exc).__name__}: {exc}"
            log.warning("lease %s: renewal before sending failed: %s", self.name, self.last_error)
            return False
        return self.is_leader

    async def _release(self, was_leader: bool) -> None:
        try:
            if was_leader and self._record is not None and self._record.holder == self.identity:
                await self.client.patch(
                    self.namespace, self.name, lz.release_patch(self._record, self.wall())
                )
                log.info("lease %s/%s released", self.namespace, self.name)
        finally:
            await self.client.close()

    def status(self) -> dict[str, Any]:
        return {
            **super().status(),
            "namespace": self.namespace,
            "identity": self.identity,
            "holder": self._record.holder if self._record else None,
        }
