"""Waiting for a service's dependencies, and readiness that follows them (every service).

A service names what it needs - PostgreSQL (`postgres`), the Kafka-protocol broker (`broker`),
the JSON-RPC node (`rpc`), the Kubernetes API (`kubernetes`) - as `Dependency` objects, each
probed with one real request (`SELECT 1`, a metadata request, `eth_chainId`, `GET /version`).

- `Dependencies.wait(stop)` at start: probes each required one until it answers, backing off
  (0.5 s doubling to 5 s, with jitter), logging what it waits for and why ("waiting for
  PostgreSQL at postgresql://perpex@db:5432/perpex (ConnectionRefusedError: ...); next try in
  2.0s"), and reporting the service not ready meanwhile. It returns False if `stop` is set
  first. Only a wrong chain (`CHAIN_ID` differs from the node's) is fatal: ConfigError.
- `Dependencies.watch(stop)` afterwards: probes each every `interval_s`; one that stops
  answering is logged and drops readiness (HealthState.set_dependency), and is logged again
  when it answers again, which restores readiness - without restarting anything.
- `retry_transient(what, fn, stop)`: a start-up step (a balance read, a consumer join) retried
  with the same backoff while it fails transiently (`is_transient_failure`).

Targets are shown redacted (no password, no RPC URL path or query).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import aiohttp

from shared.backoff import backoff_delay
from shared.config import ConfigError, check_chain_id_value, redact_dsn, redact_url
from shared.health import HealthState

log = logging.getLogger("perpex.dependencies")
T = TypeVar("T")

PROBE_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class Dependency:
    name: str  # "PostgreSQL", "broker", "RPC", "Kubernetes API"
    target: str  # where, redacted: shown in logs and readiness
    probe: Callable[[], Awaitable[None]]  # one real request; raises when it fails
    required: bool = True  # waited for at start (False: watched only)
    gates_readiness: bool = True  # not ready while it does not answer


def is_transient_failure(exc: BaseException) -> bool:
    """A failure a dependency coming back would cure: the RPC's transient errors
    (shared.chain.tx.is_transient), PostgreSQL connection failures, broker connection
    failures and retriable broker errors."""
    from shared.chain.tx import is_transient

    if isinstance(exc, ConfigError):
        return False
    if is_transient(exc):
        return True
    try:
        import asyncpg

        if isinstance(
            exc,
            (
                asyncpg.PostgresConnectionError,
                asyncpg.CannotConnectNowError,
                asyncpg.TooManyConnectionsError,
                asyncpg.InterfaceError,
                asyncpg.AdminShutdownError,
            ),
        ):
            return True
    except ImportError:  # pragma: no cover
        pass
    try:
        from aiokafka.errors import KafkaConnectionError, KafkaError

        if isinstance(exc, KafkaConnectionError):
            return True
        if isinstance(exc, KafkaError) and getattr(exc, "retriable", False):
            return True
    except ImportError:  # pragma: no cover
        pass
    return False


def _describe(exc: BaseException) -> str:
    from shared.logs import redact_urls

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    text = redact_urls(text)[:160]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def backoff(attempt: int, initial: float = 0.5, cap: float = 5.0) -> float:
    """Delay before try `attempt + 1` (attempt >= 1): initial x 2^(attempt-1), capped, +-20 %."""
    return backoff_delay(max(1, attempt), initial, cap, jitter=0.2)


async def _sleep_or_stop(stop: asyncio.Event | None, delay: float) -> bool:
    """Sleep `delay`; True when `stop` was set meanwhile."""
    if stop is None:
        await asyncio.sleep(delay)
        return False
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
    return stop.is_set()


class Dependencies:
    def __init__(
        self,
        deps: Sequence[Dependency],
        health: HealthState | None = None,
        logger: logging.Logger | None = None,
        interval_s: float = 5.0,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 5.0,
    ):
        self.deps = list(deps)
        self.health = health or HealthState()
        self.log = logger or log
        self.interval_s = interval_s
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.down: dict[str, str] = {}  # name -> why, while it does not answer

    async def check(self, dep: Dependency, attempts: int = 1) -> str | None:
        """Probe `dep` (up to `attempts` times, 0.25 s apart, until it answers); record and
        return why it failed (None: it answered). A wrong chain (ConfigError) is raised."""
        problem: str | None = None
        for attempt in range(attempts):
            if attempt:
                await asyncio.sleep(0.25 * attempt)
            try:
                await asyncio.wait_for(dep.probe(), PROBE_TIMEOUT_S + 1)
                problem = None
                break
            except ConfigError:
                raise
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                problem = _describe(exc)
        self.health.set_dependency(dep.name, problem, dep.gates_readiness)
        return problem

    async def wait(self, stop: asyncio.Event | None = None) -> bool:
        """Until every required dependency answers (True), or `stop` is set (False). All are
        probed together, so the log names everything missing at once; the others (not
        required) are probed once, for readiness."""
        waiting = [d for d in self.deps if d.required]
        started = time.monotonic()
        await asyncio.gather(*(self.check(d) for d in self.deps if not d.required))
        attempt = 0
        while waiting:
            problems = await asyncio.gather(*(self.check(d) for d in waiting))
            still = []
            for dep, problem in zip(waiting, problems, strict=True):
                if problem is None:
                    if attempt:
                        self.log.info(
                            "%s at %s reachable (after %.1fs)",
                            dep.name,
                            dep.target,
                            time.monotonic() - started,
                        )
                    continue
                still.append((dep, problem))
            if not still:
                break
            # progress (one came up) starts the backoff over: the rest may be close behind
            attempt = 1 if len(still) < len(waiting) else attempt + 1
            delay = backoff(attempt, self.backoff_initial_s, self.backoff_max_s)
            for dep, problem in still:
                self.log.warning(
                    "waiting for %s at %s (%s); next try in %.1fs",
                    dep.name,
                    dep.target,
                    problem,
                    delay,
                )
            waiting = [dep for dep, _ in still]
            if await _sleep_or_stop(stop, delay):
                return False
        return True

    async def watch(self, stop: asyncio.Event) -> None:
        """Probe every dependency every `interval_s` until `stop`; log and report changes. One
        that answered is declared away only after three failed probes in a row (a single lost
        answer from a flaky provider does not flip readiness)."""
        while not stop.is_set():
            for dep in self.deps:
                try:
                    problem = await self.check(dep, attempts=1 if dep.name in self.down else 3)
                except ConfigError as exc:  # the node now reports another chain
                    problem = str(exc).splitlines()[-1].strip()
                    self.health.set_dependency(dep.name, problem, dep.gates_readiness)
                was = self.down.get(dep.name)
                if problem is not None and was is None:
                    self.down[dep.name] = problem
                    self.log.warning(
                        "%s at %s unreachable (%s)%s",
                        dep.name,
                        dep.target,
                        problem,
                        ": not ready until it answers" if dep.gates_readiness else "",
                    )
                elif problem is None and was is not None:
                    del self.down[dep.name]
                    self.log.info("%s at %s reachable again", dep.name, dep.target)
            if await _sleep_or_stop(stop, self.interval_s):
                return

    def start_watch(self, stop: asyncio.Event) -> asyncio.Task[None]:
        return asyncio.create_task(self.watch(stop), name="dependencies")


async def retry_transient(
    what: str,
    fn: Callable[[], Awaitable[T]],
    stop: asyncio.Event | None = None,
    logger: logging.Logger | None = None,
    transient: Callable[[BaseException], bool] = is_transient_failure,
    initial_s: float = 0.5,
    cap_s: float = 5.0,
    max_attempts: int | None = None,
) -> T:
    """`fn()`, retried with backoff while it fails transiently (logging each failure), for ever
    or up to `max_attempts` tries. Raises StopRequested when `stop` is set while waiting; any
    other failure (or the last transient one) as it is."""
    attempt = 0
    while True:
        try:
            return await fn()
        except Exception as exc:
            if not transient(exc) or (max_attempts is not None and attempt + 1 >= max_attempts):
                raise
            attempt += 1
            delay = backoff(attempt, initial_s, cap_s)
            (logger or log).warning(
                "%s failed (%s); retrying in %.1fs", what, _describe(exc), delay
            )
            if await _sleep_or_stop(stop, delay):
                raise StopRequested(f"stopped while retrying {what}") from None


async def run_opened(
    open_app: Callable[[], contextlib.AbstractAsyncContextManager[T]],
    body: Callable[[T], Awaitable[None]],
    stop: asyncio.Event,
    health: HealthState | None = None,
    logger: logging.Logger | None = None,
    transient: Callable[[BaseException], bool] = is_transient_failure,
) -> None:
    """`async with open_app() as app: await body(app)`, where opening (connect, migrate, read
    the chain...) is retried with backoff while it fails transiently - a dependency that went
    away again between `wait()` and the open. Once open, failures are the body's own."""
    attempt = 0
    while True:
        opened = False
        try:
            async with open_app() as app:
                opened = True
                await body(app)
            return
        except Exception as exc:
            if opened or not transient(exc):
                raise
            attempt += 1
            delay = backoff(attempt)
            (logger or log).warning(
                "start-up failed (%s); retrying in %.1fs", _describe(exc), delay
            )
            if health is not None:
                health.set_ready(False, f"starting: {type(exc).__name__}")
            if await _sleep_or_stop(stop, delay):
                raise StopRequested("stopped while starting") from None


class StopRequested(Exception):
    """SIGTERM/SIGINT arrived while the service was still starting (waiting or retrying)."""


# ---------------------------------------------------------------------- the dependencies
def postgres(dsn: str, **kw: Any) -> Dependency:
    async def probe() -> None:
        import asyncpg

        conn = await asyncpg.connect(dsn, timeout=PROBE_TIMEOUT_S)
        try:
            await conn.fetchval("SELECT 1")
        finally:
            await conn.close(timeout=PROBE_TIMEOUT_S)

    return Dependency("PostgreSQL", redact_dsn(dsn), probe, **kw)


def broker(bootstrap_servers: str, **kw: Any) -> Dependency:
    async def probe() -> None:
        from aiokafka.client import AIOKafkaClient

        client = AIOKafkaClient(
            bootstrap_servers=bootstrap_servers,
            request_timeout_ms=int(PROBE_TIMEOUT_S * 1000),
        )
        try:
            await client.bootstrap()  # a metadata request to a bootstrap server
        finally:
            await client.close()

    return Dependency("broker", bootstrap_servers, probe, **kw)


def rpc(
    url: str,
    chain_id: int | None = None,
    timeout: float = PROBE_TIMEOUT_S,
    name: str = "RPC",
    **kw: Any,
) -> Dependency:
    """The JSON-RPC node: eth_chainId, checked against `chain_id` (CHAIN_ID) when given."""

    async def probe() -> None:
        payload = {"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}
        client_timeout = aiohttp.ClientTimeout(total=timeout)
        async with (
            aiohttp.ClientSession(timeout=client_timeout) as session,
            session.post(url, json=payload, raise_for_status=True) as resp,
        ):
            reply = await resp.json(content_type=None)
        if not isinstance(reply, dict) or "result" not in reply:
            error = reply.get("error") if isinstance(reply, dict) else reply
            raise RuntimeError(f"eth_chainId answered {str(error)[:120]}")
        if chain_id is not None:
            check_chain_id_value(chain_id, int(reply["result"], 16))

    return Dependency(name, redact_url(url), probe, **kw)
