"""The service skeleton: what every long-running Perp-EX service (indexer, keeper, funding
updater, dashboard, relayer, operator) does around its own work, the same way.

- Configuration: settings read once; a ConfigError prints every problem and exits 2
  (EXIT_CONFIG_ERROR), before anything starts.
- Logging to stderr with secrets redacted (shared/logs.py); telemetry set up (OTLP when
  configured, Prometheus always: shared/telemetry.py, shared/metrics.py).
- Signals: the first SIGTERM/SIGINT sets `svc.stop` (a graceful stop, logged with what the
  service is finishing); a second one exits at once with 128 + the signal number.
- One health server on HEALTH_PORT (0: off): /healthz, /readyz, /status, /metrics
  (shared/health.py), with the service's status (`svc.health.set_status`).
- Dependencies waited for with backoff at start, then watched (`svc.wait_for`,
  shared/dependencies.py); stopping while waiting exits 0.
- A heartbeat watchdog (`svc.watchdog`): /healthz fails once the service's loop has not come
  around for `wedged_after(period, longest step)` seconds.
- Exit status (`run_guarded`): 0 when the work returns or was stopped, 2 for a ConfigError, 3
  when a server cannot listen (EXIT_CANNOT_SERVE), 1 for anything else, logged as ONE line
  (the traceback only at DEBUG).

A service's CLI calls `run_main(...)`; its in-process runner (tests, the benchmarks)
`await run_service(...)`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from typing import Any, NoReturn, TypeVar

from shared.config import EXIT_CONFIG_ERROR, ConfigError
from shared.dependencies import Dependencies, StopRequested
from shared.health import HealthState, serve_health
from shared.http_server import EXIT_CANNOT_SERVE, CannotServe
from shared.logs import LOG_FORMAT, RedactingFormatter, configure_logging, redact, redact_urls
from shared.metrics import observe

__all__ = [
    "EXIT_CANNOT_SERVE",
    "EXIT_CONFIG_ERROR",
    "EXIT_FAILURE",
    "EXIT_OK",
    "LOG_FORMAT",
    "RedactingFormatter",
    "Service",
    "configure_logging",
    "redact",
    "redact_urls",
    "run_guarded",
    "run_main",
    "run_service",
    "service_scope",
    "watchdog",
    "wedged_after",
]

EXIT_OK = 0
EXIT_FAILURE = 1
WEDGED_MIN_S = 120.0
S = TypeVar("S")


def wedged_after(period_s: float, longest_step_s: float = 0.0) -> float:
    """Seconds without a heartbeat after which a service's loop counts as wedged (/healthz
    fails and Kubernetes restarts the pod). The loop stamps its heartbeat once per round; a
    round sleeps up to `period_s` and may legitimately spend `longest_step_s` on one step (a
    transaction's confirmation wait): wedged is no round for the longest of two minutes, ten
    periods, and twice that step plus a minute."""
    return max(WEDGED_MIN_S, 10 * period_s, 2 * longest_step_s + 60)


async def watchdog(
    health: HealthState,
    heartbeat: Callable[[], float],
    wedged_s: float,
    stop: asyncio.Event,
    readiness: Callable[[], tuple[bool, str]] | None = None,
    clock: Callable[[], float] = time.monotonic,
    every_s: float = 1.0,
) -> None:
    """Until `stop`: `health.alive` is whether `heartbeat()` (a `clock()` time) is less than
    `wedged_s` old; `readiness()`, when given, sets readiness (ready, why)."""
    while not stop.is_set():
        health.alive = clock() - heartbeat() < wedged_s
        if readiness is not None:
            ready, why = readiness()
            health.set_ready(ready, why)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), every_s)


async def run_guarded(
    log: logging.Logger, service: str, main: Callable[[], Awaitable[None]]
) -> int:
    """Run a service's `main()` and turn its end into the exit status, the same way for every
    service: 0 when it returns (or was stopped while still starting); 2 for a ConfigError
    (printed as is: every problem named); 3 when a server cannot listen; 1 for anything else,
    as ONE log line (the traceback only at DEBUG), never a raw traceback."""
    try:
        await main()
        return EXIT_OK
    except StopRequested as exc:
        log.info("%s", exc)
        return EXIT_OK
    except ConfigError as exc:
        print(redact(str(exc)), file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except CannotServe as exc:
        log.critical("%s failed: %s", service, exc)
        return EXIT_CANNOT_SERVE
    except Exception as exc:
        detail = " ".join(line.strip() for line in str(exc).strip().splitlines())
        log.critical(
            "%s failed: %s%s", service, type(exc).__name__, f": {detail}" if detail else ""
        )
        log.debug("%s failure traceback", service, exc_info=True)
        return EXIT_FAILURE


class Service:
    """A running service's skeleton: its stop event, health state and background tasks."""

    def __init__(self, name: str, log: logging.Logger, stop: asyncio.Event, health: HealthState):
        self.name = name
        self.log = log
        self.stop = stop
        self.health = health
        self._tasks: list[asyncio.Task[Any]] = []

    def spawn(self, coro: Coroutine[Any, Any, Any], name: str) -> asyncio.Task[Any]:
        """A background task, cancelled when the service's scope ends."""
        task = asyncio.create_task(coro, name=name)
        self._tasks.append(task)
        return task

    async def wait_for(self, deps: Dependencies) -> None:
        """Wait for every required dependency (backoff, logging what for, not ready
        meanwhile), then watch them all until the scope ends. StopRequested when stopped
        first."""
        names = ", ".join(d.name for d in deps.deps if d.required) or "dependencies"
        self.health.set_ready(False, f"starting: waiting for {names}")
        if not await deps.wait(self.stop):
            raise StopRequested("stopped while waiting for dependencies")
        self.spawn(deps.watch(self.stop), "dependencies")

    def watchdog(
        self,
        heartbeat: Callable[[], float],
        wedged_s: float,
        readiness: Callable[[], tuple[bool, str]] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> asyncio.Task[Any]:
        """Start the heartbeat watchdog (see `watchdog`)."""
        return self.spawn(
            watchdog(self.health, heartbeat, wedged_s, self.stop, readiness, clock), "watchdog"
        )

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks.clear()


_current_health: HealthState | None = None  # the running service's (one per process)
_metrics_provider: Any = None


def _service_metrics(health: HealthState) -> None:
    """Readiness, liveness and each dependency as gauges of every service (created once per
    meter provider, reading the service running now)."""
    global _current_health, _metrics_provider
    from opentelemetry import metrics

    from shared.telemetry import meter

    _current_health = health
    provider = metrics.get_meter_provider()
    if _metrics_provider is provider:
        return
    _metrics_provider = provider

    def state() -> HealthState:
        assert _current_health is not None
        return _current_health

    m = meter("perpex.service")
    m.create_observable_gauge(
        "perpex_service_ready",
        [observe(lambda: 1 if state().ready else 0)],
        description="1 while the service reports itself ready (its own state and dependencies)",
    )
    m.create_observable_gauge(
        "perpex_service_alive",
        [observe(lambda: 1 if state().alive else 0)],
        description="0 once the watchdog finds the main loop wedged",
    )
    m.create_observable_gauge(
        "perpex_service_dependency_up",
        [
            observe(
                lambda: [
                    (1 if problem is None else 0, {"dependency": name})
                    for name, (problem, _) in state().dependencies.items()
                ]
            )
        ],
        description="1 while the dependency answers its probe",
    )


@contextlib.asynccontextmanager
async def service_scope(
    log: logging.Logger,
    on_stop: str,
    health_port: int | None = None,
    name: str = "service",
    health_host: str = "0.0.0.0",
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> AsyncIterator[Service]:
    """The skeleton around a service's work: `svc.stop` is set by the first SIGTERM/SIGINT
    (logging `on_stop`), a second one exits at once; the health server serves `svc.health`
    on `health_port` (None: HEALTH_PORT; 0: off) until the block exits."""
    stop = asyncio.Event()
    state = HealthState()
    svc = Service(name, log, stop, state)
    install_signal_handlers(svc, on_stop, signals)
    _service_metrics(state)
    health_task = asyncio.create_task(serve_health(state, health_port, health_host), name="health")

    def _probes_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled():  # e.g. the port is taken: say so, the service runs on
            exc = task.exception()
            log.error("health probes are not served (%s)", exc or "server stopped")

    health_task.add_done_callback(_probes_ended)
    try:
        yield svc
    finally:
        await svc.close()
        health_task.cancel()
        with contextlib.suppress(BaseException):
            await health_task
        loop = asyncio.get_running_loop()
        for sig in signals:
            loop.remove_signal_handler(sig)


def install_signal_handlers(
    svc: Service,
    on_stop: str,
    signals: Sequence[signal.Signals] = (signal.SIGTERM, signal.SIGINT),
) -> None:
    """First signal: `svc.stop`; second: exit now. Installed again by a service whose library
    took the signals over meanwhile (the operator, after kopf started)."""
    loop = asyncio.get_running_loop()

    def _on_signal(sig: signal.Signals) -> None:
        if svc.stop.is_set():  # a second signal: the operator does not want to wait any longer
            svc.log.warning("%s received again: exiting now, without finishing", sig.name)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(128 + sig.value)
        svc.log.info("%s received: %s (a second signal exits at once)", sig.name, on_stop)
        svc.stop.set()

    for sig in signals:
        loop.add_signal_handler(sig, _on_signal, sig)


async def run_service(
    name: str,
    log: logging.Logger,
    on_stop: str,
    main: Callable[[Service], Awaitable[None]],
    health_port: int | None = None,
    health_host: str = "0.0.0.0",
) -> int:
    """Run `main(svc)` inside the skeleton; the exit status (see `run_guarded`)."""
    async with service_scope(log, on_stop, health_port, name, health_host) as svc:
        return await run_guarded(log, name, lambda: main(svc))


def run_main(
    name: str,
    load: Callable[[], S],
    run: Callable[[S], Coroutine[Any, Any, int]],
    quiet: dict[str, int] | None = None,
    configure: Callable[[S], None] | None = None,
) -> NoReturn:
    """A service's command: settings (a ConfigError: printed, exit 2), logging (`configure`
    replaces the default set-up, e.g. kopf's), telemetry, then `run(settings)` (which runs
    `run_service`) in a new event loop; exits with its status."""
    from shared.telemetry import setup_telemetry

    try:
        settings = load()
    except ConfigError as exc:
        print(redact(str(exc)), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None
    if configure is not None:
        configure(settings)
    else:
        level = str(getattr(settings, "log_level", "INFO"))
        configure_logging(level, quiet, secrets=[settings])
    setup_telemetry(f"perpex-{name}")
    sys.exit(asyncio.run(run(settings)))
