"""The service skeleton every service runs in (shared/service.py, shared/health.py,
shared/metrics.py): exit statuses and the one-line failure, HEALTH_PORT=0 meaning no server,
the status set through the public setter, the heartbeat watchdog, and /metrics (read with
Prometheus' text parser) carrying each service's readiness, liveness and dependencies."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from metrics_scrape import Scrape, scrape_until

import shared.http_server
from perpex_dev.devstack.ports import free_port
from shared.config import EXIT_CONFIG_ERROR, ConfigError
from shared.dependencies import StopRequested
from shared.health import HealthState
from shared.http_server import EXIT_CANNOT_SERVE, CannotServe
from shared.service import (
    EXIT_FAILURE,
    EXIT_OK,
    run_guarded,
    run_service,
    service_scope,
    watchdog,
    wedged_after,
)
from shared.telemetry import setup_telemetry

log = logging.getLogger("perpex.test-skeleton")


async def _raise(exc: BaseException) -> None:
    raise exc


async def _nothing() -> None:
    return None


@pytest.mark.parametrize(
    ("exc", "status"),
    [
        (None, EXIT_OK),
        (StopRequested("stopped while waiting for dependencies"), EXIT_OK),
        (ConfigError({"RPC_URL": "must be a URL"}, "svc"), EXIT_CONFIG_ERROR),
        (CannotServe("cannot serve on 0.0.0.0:8080"), EXIT_CANNOT_SERVE),
        (RuntimeError("boom\nsecond line"), EXIT_FAILURE),
    ],
)
async def test_run_guarded_turns_the_end_into_one_exit_status(
    exc: BaseException | None,
    status: int,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    caplog.set_level(logging.INFO, logger=log.name)
    main = _nothing if exc is None else lambda: _raise(exc)
    assert await run_guarded(log, "svc", main) == status
    if isinstance(exc, ConfigError):
        assert "RPC_URL" in capsys.readouterr().err
    if type(exc) is RuntimeError:
        (line,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
        assert line.getMessage() == "svc failed: RuntimeError: boom second line"
        assert line.exc_info is None  # one line, never a raw traceback
        assert "Traceback" not in caplog.text


def test_wedged_after_one_formula() -> None:
    assert wedged_after(0.1) == 120.0  # at least two minutes
    assert wedged_after(30.0) == 300.0  # ten periods
    assert wedged_after(1.0, 300.0) == 660.0  # twice the longest step plus a minute


async def test_the_watchdog_fails_liveness_once_the_heartbeat_is_old() -> None:
    state = HealthState()
    stop = asyncio.Event()
    now = [1000.0]
    beat = [1000.0]
    task = asyncio.create_task(
        watchdog(
            state,
            lambda: beat[0],
            60.0,
            stop,
            readiness=lambda: (True, "fine"),
            clock=lambda: now[0],
            every_s=0.01,
        )
    )
    try:
        await asyncio.sleep(0.05)
        assert state.alive and state.ready and state.reason == "fine"
        now[0] += 61
        await asyncio.sleep(0.05)
        assert not state.alive
        beat[0] = now[0]
        await asyncio.sleep(0.05)
        assert state.alive
    finally:
        stop.set()
        await asyncio.wait_for(task, 1)


@pytest.fixture
def no_server(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    """Every health server made (none expected)."""
    made: list[Any] = []
    real = shared.http_server.EmbeddedServer

    class Recording(real):  # type: ignore[misc,valid-type]
        def __init__(self, *args: Any, **kw: Any) -> None:
            made.append(args)
            super().__init__(*args, **kw)

    monkeypatch.setattr(shared.http_server, "EmbeddedServer", Recording)
    yield made


@pytest.mark.parametrize("from_env", [False, True])
async def test_health_port_0_means_no_server(
    no_server: list[Any], monkeypatch: pytest.MonkeyPatch, from_env: bool
) -> None:
    monkeypatch.setenv("HEALTH_PORT", "0")

    async def main(svc: Any) -> None:
        svc.health.set_ready(True, "ready")
        await asyncio.sleep(0.1)

    assert await run_service("svc", log, "stopping", main, None if from_env else 0) == EXIT_OK
    assert no_server == []


@pytest.fixture
def prometheus() -> Iterator[None]:
    """This process's meter provider with the Prometheus reader /metrics serves, as
    `run_main` sets it up."""
    setup_telemetry("perpex-test", force=True)
    yield


async def test_status_readiness_and_metrics_on_the_health_port(prometheus: None) -> None:
    port = free_port()
    async with service_scope(log, "stopping", port, "svc", "127.0.0.1") as svc:
        svc.health.set_status(lambda: {"markets": 2})
        svc.health.set_dependency("RPC", None)
        svc.health.set_dependency("PostgreSQL", "connection refused")

        def started(m: Scrape) -> bool:
            return m.value("perpex_service_alive") == 1

        m = await scrape_until(port, started, within=10)
        assert m.value("perpex_service_ready") == 0
        assert m.value("perpex_service_dependency_up", dependency="RPC") == 1
        assert m.value("perpex_service_dependency_up", dependency="PostgreSQL") == 0

        svc.health.set_ready(True, "serving")
        svc.health.set_dependency("PostgreSQL", None)
        m = await scrape_until(port, lambda m: m.value("perpex_service_ready") == 1)
        assert m.value("perpex_service_dependency_up", dependency="PostgreSQL") == 1
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            status = (await client.get("/status")).json()
            assert status["markets"] == 2 and status["ready"] is True
            assert status["dependencies"] == {"RPC": "ok", "PostgreSQL": "ok"}
            assert (await client.get("/readyz")).text == "serving"
            svc.health.alive = False
            assert (await client.get("/healthz")).status_code == 503


async def test_metrics_answer_404_when_telemetry_is_disabled(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OTEL_SDK_DISABLED", "true")
    monkeypatch.setattr("shared.metrics._registry", None)
    setup_telemetry("perpex-test", force=True)
    port = free_port()
    async with service_scope(log, "stopping", port, "svc", "127.0.0.1"):
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            for _ in range(100):
                try:
                    resp = await client.get("/metrics")
                    break
                except httpx.TransportError:
                    await asyncio.sleep(0.05)
            assert resp.status_code == 404 and "OTEL_SDK_DISABLED" in resp.text
    monkeypatch.delenv("OTEL_SDK_DISABLED")
    setup_telemetry("perpex-test", force=True)


async def test_a_taken_health_port_is_logged_and_the_service_runs_on(
    caplog: pytest.LogCaptureFixture,
) -> None:
    port = free_port()
    blocker = await asyncio.start_server(lambda r, w: None, "127.0.0.1", port)
    try:
        ran = asyncio.Event()

        async def main(svc: Any) -> None:
            # the service works on while the health server finds its port taken (waited for:
            # on a busy machine the server may take a while to try)
            for _ in range(200):
                if "health probes are not served" in caplog.text:
                    break
                await asyncio.sleep(0.05)
            ran.set()

        assert await run_service("svc", log, "stopping", main, port, "127.0.0.1") == EXIT_OK
        assert ran.is_set()
        assert "health probes are not served" in caplog.text
    finally:
        blocker.close()
        await blocker.wait_closed()
