"""What every long-running Perp-EX service does around its main loop: logging set-up, a stop
event set by SIGTERM/SIGINT (graceful shutdown), and the /healthz and /readyz server."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable

from shared.config import EXIT_CONFIG_ERROR, ConfigError, redact_dsn, redact_url
from shared.health import HealthState, serve_health

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


_URL = re.compile(r"\b(?:https?|wss?|postgres(?:ql)?)://[^\s'\"<>)]+")


def redact_urls(text: str) -> str:
    """Every URL in `text` cut to scheme://host[:port] (DSNs keep user, host and database):
    an RPC URL's path or query may hold an API key, a DSN a password."""
    return _URL.sub(
        lambda m: (
            redact_dsn(m.group(0)) if m.group(0).startswith("postgres") else redact_url(m.group(0))
        ),
        text,
    )


class RedactingFormatter(logging.Formatter):
    """A log line, traceback included, with its URLs redacted (exceptions from HTTP clients
    quote the URL they called)."""

    def format(self, record: logging.LogRecord) -> str:
        return redact_urls(super().format(record))


def configure_logging(level: str, quiet: dict[str, int] | None = None) -> None:
    """Log to stderr at `level`, URLs redacted; `quiet` lowers chatty libraries."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    for handler in logging.getLogger().handlers:
        if type(handler) is logging.StreamHandler:  # ours, not a test runner's capture
            handler.setFormatter(RedactingFormatter(LOG_FORMAT))
    # asyncpg's pool logs each failed reconnect with a traceback while PostgreSQL is away; the
    # dependency watch says that in one line (PostgreSQL unreachable / reachable again).
    for name, lib_level in {"aiokafka": logging.ERROR, "httpx": logging.WARNING,
                            "asyncpg.pool": logging.ERROR, **(quiet or {})}.items():  # fmt: skip
        logging.getLogger(name).setLevel(lib_level)


async def run_guarded(
    log: logging.Logger, service: str, main: Callable[[], Awaitable[None]]
) -> int:
    """Run a service's `main()` and turn its end into the exit status, the same way for every
    service: 0 when it returns (or was stopped while still starting); 2 for a ConfigError
    (printed as is: every problem named); 1 for anything else, as ONE log line (the traceback
    only at DEBUG), never a raw traceback."""
    from shared.dependencies import StopRequested

    try:
        await main()
        return 0
    except StopRequested as exc:
        log.info("%s", exc)
        return 0
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        return EXIT_CONFIG_ERROR
    except Exception as exc:
        detail = " ".join(line.strip() for line in str(exc).strip().splitlines())
        log.critical(
            "%s failed: %s%s", service, type(exc).__name__, f": {detail}" if detail else ""
        )
        log.debug("%s failure traceback", service, exc_info=True)
        return 1


@contextlib.asynccontextmanager
async def service_scope(
    log: logging.Logger, on_stop: str, health_port: int | None = None
) -> AsyncIterator[tuple[asyncio.Event, HealthState]]:
    """Yield (stop, health): `stop` is set on SIGTERM/SIGINT (logging `on_stop`); the probes
    serve `health` on HEALTH_PORT until the block exits."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    def _on_signal(sig: signal.Signals) -> None:
        if stop.is_set():  # a second signal: the operator does not want to wait any longer
            log.warning("%s received again: exiting now, without finishing", sig.name)
            for handler in logging.getLogger().handlers:
                handler.flush()
            os._exit(128 + sig.value)
        log.info("%s received: %s (a second signal exits at once)", sig.name, on_stop)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, sig)
    state = HealthState()
    health_task = asyncio.create_task(serve_health(state, health_port), name="health")

    def _probes_ended(task: asyncio.Task[None]) -> None:
        if not task.cancelled():  # e.g. the port is taken: say so, the service runs on
            exc = task.exception()
            log.error("health probes are not served (%s)", exc or "server stopped")

    health_task.add_done_callback(_probes_ended)
    try:
        yield stop, state
    finally:
        health_task.cancel()
        with contextlib.suppress(BaseException):
            await health_task
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
