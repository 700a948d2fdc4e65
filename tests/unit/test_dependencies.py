"""The shared dependency waiter and readiness (shared/dependencies.py, shared/health.py)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from shared.config import ConfigError
from shared.dependencies import (
    Dependencies,
    Dependency,
    StopRequested,
    is_transient_failure,
    retry_transient,
)
from shared.health import HealthState


class Switch:
    """A dependency that answers while `up`."""

    def __init__(self, up: bool = False):
        self.up = up
        self.calls = 0

    async def probe(self) -> None:
        self.calls += 1
        if not self.up:
            raise ConnectionRefusedError(111, "Connect call failed")


def _deps(health: HealthState, **switches: tuple[Switch, bool, bool]) -> Dependencies:
    return Dependencies(
        [
            Dependency(name, f"{name}-host:1", sw.probe, required=req, gates_readiness=gates)
            for name, (sw, req, gates) in switches.items()
        ],
        health,
        interval_s=0.02,
        backoff_initial_s=0.01,
        backoff_max_s=0.02,
    )


async def _until(predicate: object, within: float = 5.0) -> None:
    deadline = asyncio.get_running_loop().time() + within
    while not predicate():  # type: ignore[operator]
        assert asyncio.get_running_loop().time() < deadline, "condition not met"
        await asyncio.sleep(0.01)


async def test_waits_logging_what_for_and_is_not_ready_meanwhile(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    health = HealthState()
    db, rpc = Switch(), Switch(up=True)
    deps = _deps(health, PostgreSQL=(db, True, True), RPC=(rpc, True, True))
    waiter = asyncio.create_task(deps.wait())
    await _until(lambda: db.calls >= 3)
    health.set_ready(True)  # the service itself would be ready...
    assert not health.ready  # ...but PostgreSQL does not answer
    assert health.reason.startswith("PostgreSQL unreachable (ConnectionRefusedError")
    assert not waiter.done()
    db.up = True
    assert await asyncio.wait_for(waiter, 5)
    assert health.ready
    text = caplog.text
    assert "waiting for PostgreSQL at PostgreSQL-host:1 (ConnectionRefusedError" in text
    assert "PostgreSQL at PostgreSQL-host:1 reachable" in text


async def test_readiness_drops_while_a_dependency_is_away_and_comes_back_with_it(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO)
    health = HealthState()
    broker = Switch(up=True)
    feed = Switch(up=True)
    deps = _deps(health, broker=(broker, True, True), feed=(feed, False, False))
    assert await deps.wait()
    health.set_ready(True)
    stop = asyncio.Event()
    watch = deps.start_watch(stop)
    try:
        broker.up = False
        await _until(lambda: not health.ready)
        assert "broker at broker-host:1 unreachable" in caplog.text
        broker.up = True
        await _until(lambda: health.ready)
        assert "broker at broker-host:1 reachable again" in caplog.text
        feed.up = False  # watched, but does not gate readiness
        await _until(lambda: health.dependencies["feed"][0] is not None)
        assert health.ready
        assert health.dependency_status()["feed"].startswith("ConnectionRefusedError")
    finally:
        stop.set()
        await asyncio.wait_for(watch, 5)


async def test_stop_ends_the_wait_and_a_wrong_chain_is_fatal() -> None:
    health = HealthState()
    stop = asyncio.Event()
    deps = _deps(health, RPC=(Switch(), True, True))
    waiter = asyncio.create_task(deps.wait(stop))
    await asyncio.sleep(0.05)
    stop.set()
    assert await asyncio.wait_for(waiter, 5) is False

    async def other_chain() -> None:
        raise ConfigError({"CHAIN_ID": "is 1 but the node at RPC_URL reports 5"})

    fatal = Dependencies([Dependency("RPC", "node", other_chain)], health)
    with pytest.raises(ConfigError):
        await fatal.wait()


async def test_a_start_up_step_is_retried_while_it_fails_transiently() -> None:
    failures = [ConnectionResetError(), TimeoutError(), OSError("unreachable")]

    async def step() -> str:
        if failures:
            raise failures.pop(0)
        return "done"

    assert await retry_transient("step", step, initial_s=0.001, cap_s=0.002) == "done"

    async def broken() -> None:
        raise ValueError("a bug, not an outage")

    with pytest.raises(ValueError):
        await retry_transient("broken", broken, initial_s=0.001)

    stop = asyncio.Event()
    stop.set()

    async def down() -> None:
        raise ConnectionRefusedError()

    with pytest.raises(StopRequested):
        await retry_transient("down", down, stop, initial_s=0.001)

    calls = 0

    async def always_down() -> None:
        nonlocal calls
        calls += 1
        raise ConnectionRefusedError()

    with pytest.raises(ConnectionRefusedError):  # a CLI gives up after a few tries
        await retry_transient("down", always_down, initial_s=0.001, max_attempts=3)
    assert calls == 3


def test_transient_failures_of_each_dependency() -> None:
    import asyncpg
    from aiokafka.errors import KafkaConnectionError, UnknownTopicOrPartitionError

    assert is_transient_failure(ConnectionRefusedError())
    assert is_transient_failure(asyncpg.CannotConnectNowError("the database system is starting"))
    assert is_transient_failure(asyncpg.TooManyConnectionsError("too many"))
    assert is_transient_failure(KafkaConnectionError())
    assert is_transient_failure(UnknownTopicOrPartitionError())  # retriable
    assert not is_transient_failure(ConfigError({"X": "bad"}))
    assert not is_transient_failure(ValueError("bug"))


def test_one_rule_for_unknown_markets() -> None:
    from shared.config import check_markets

    eth, btc = "0x" + "aa" * 32, "0x" + "bb" * 32
    known = {eth: "ETH/USDT", btc: "BTC/USDT"}
    check_markets("keeper", {eth: "ETH/USDT"}, [eth, btc], known, "0xPM")  # fine
    with pytest.raises(ConfigError) as err:
        check_markets(
            "keeper", {eth: "ETH/USDT", "0x" + "cc" * 32: "DOGE/USDT"}, [eth, btc], known, "0xPM"
        )
    assert err.value.service == "keeper"
    assert err.value.problems == {
        "MARKETS": "DOGE/USDT is not a market of PositionManager 0xPM; its markets: ETH/USDT, BTC/USDT"
    }
