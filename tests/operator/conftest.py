"""Fixtures for the operator tests; the harness itself is in operator_harness.py."""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import kmock as km
import kopf
import pytest
from operator_harness import (
    CrdValidator,
    OperatorEnv,
    OperatorFactory,
    VersionedEmulator,
    declare_resources,
)

from services.operator.config import OperatorConfig
from services.operator.handlers import configure_settings, register
from shared.kube import KubeApi


@pytest.fixture(scope="session")
def crd_validator() -> CrdValidator:
    return CrdValidator()


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": VersionedEmulator}


@pytest.fixture
def emulator(kmock: km.KubernetesEmulator) -> OperatorEnv:
    """kmock's Kubernetes API emulation, serving the kinds the operator and the chart use."""
    declare_resources(kmock)
    return OperatorEnv(kmock)


@pytest.fixture
async def start_operator(emulator: OperatorEnv) -> AsyncIterator[OperatorFactory]:
    """Start the operator under kopf against kmock; stopped (and joined) at teardown.

    kopf runs in its own thread and event loop, as `kopf run` would in its own process: at
    shutdown kopf cancels every task of its loop that it did not start with, which must not
    include the test's own tasks. Only HTTP connects the two loops.
    """
    env = emulator
    running: list[tuple[threading.Event, threading.Thread, list[BaseException]]] = []

    async def start(
        config: OperatorConfig | None = None,
        peering: str | None = None,
        priority: int = 0,
    ) -> OperatorEnv:
        config = config or OperatorConfig(image="perpex:test", status_interval=0.5)
        registry = kopf.OperatorRegistry()

        @kopf.on.login(registry=registry)
        def login(**_: Any) -> kopf.ConnectionInfo:
            return kopf.ConnectionInfo(server=env.base)

        register(registry, config)
        settings = kopf.OperatorSettings()
        configure_settings(settings)
        settings.watching.server_timeout = 30
        settings.watching.reconnect_backoff = 0.1
        settings.queueing.exit_timeout = 2.0
        settings.queueing.idle_timeout = 0.5
        settings.peering.lifetime = 5

        async def kube_factory() -> KubeApi:
            return KubeApi.for_host(env.base)

        stop, ready = threading.Event(), threading.Event()
        errors: list[BaseException] = []

        def run() -> None:
            try:
                asyncio.run(
                    kopf.operator(
                        registry=registry,
                        settings=settings,
                        clusterwide=True,
                        standalone=peering is None,
                        peering_name=peering,
                        priority=priority,
                        stop_flag=stop,
                        ready_flag=ready,
                        memo=kopf.Memo(kube_factory=kube_factory),
                    )
                )
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, name="kopf-operator", daemon=True)
        thread.start()
        running.append((stop, thread, errors))
        started = await asyncio.to_thread(ready.wait, 20)
        assert started and not errors, f"operator did not start: {errors}"
        return env

    try:
        yield start
    finally:
        for stop, thread, errors in reversed(running):
            stop.set()
            await asyncio.to_thread(thread.join, 20)
            assert not thread.is_alive(), "the operator did not stop within 20 s"
            assert not errors, f"the operator failed: {errors}"


@pytest.fixture(autouse=True)
def _quiet_access_log() -> Iterator[None]:
    logger = logging.getLogger("aiohttp.access")
    level = logger.level
    logger.setLevel(logging.WARNING)
    yield
    logger.setLevel(level)
