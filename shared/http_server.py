"""One way to run an embedded uvicorn server: the health port of every service, the dashboard's
page and API, the demo's OTLP sink.

uvicorn never touches SIGTERM/SIGINT here: the service skeleton (shared/service.py) owns the
signals and stops the server through `request_stop()`. A server that cannot listen (the port is
taken) raises `CannotServe` from `serve_until_stopped()`, which the skeleton turns into exit
status 3 (`EXIT_CANNOT_SERVE`), instead of uvicorn's SystemExit escaping a task.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

EXIT_CANNOT_SERVE = 3  # uvicorn's own status for a server that could not start


class CannotServe(RuntimeError):
    """The server did not start (e.g. its port is taken)."""


class EmbeddedServer(uvicorn.Server):
    """uvicorn without its own signal handling."""

    def __init__(self, app: Any, host: str, port: int, **config: Any):
        config.setdefault("log_level", "warning")
        super().__init__(uvicorn.Config(app, host=host, port=port, **config))
        self.where = f"{host}:{port}"

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield

    @property
    def bound_port(self) -> int | None:
        """The port listened on once started (the one asked for, or the one picked for 0)."""
        for server in getattr(self, "servers", []) or []:
            for sock in server.sockets:
                return int(sock.getsockname()[1])
        return None

    def request_stop(self, force: bool = False) -> None:
        """Stop accepting and close connections (`force`: without waiting for them)."""
        self.should_exit = True
        if force:
            self.force_exit = True

    async def serve_until_stopped(self) -> None:
        """Serve until `request_stop()`; CannotServe when the server never started."""
        try:
            await self.serve()
        except SystemExit:  # uvicorn's startup failure (it logged why)
            raise CannotServe(f"cannot serve on {self.where}") from None
        if not self.started:
            raise CannotServe(f"cannot serve on {self.where}")


def serve_in_thread(
    app: Any, host: str, port: int, start_within: float = 10.0
) -> Callable[[], None]:
    """Serve `app` from a background thread (a tool beside synchronous code, such as the demo's
    OTLP sink); returns a function that stops it."""
    server = EmbeddedServer(app, host, port)
    thread = threading.Thread(target=server.run, name=f"http-{port}", daemon=True)
    thread.start()
    deadline = time.monotonic() + start_within
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)

    def stop() -> None:
        server.request_stop()
        thread.join(5)

    return stop
