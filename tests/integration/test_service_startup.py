"""Every service as a process, started while its dependencies are away: the RPC node,
PostgreSQL and the broker all refuse connections for ~10 s (TCP proxies taken down), and once
they are back each service's first call of every start-up RPC method answers HTTP 500 (a fault
proxy per service). No service exits; each logs what it waits for, reports not ready meanwhile
and becomes ready without a restart. Then PostgreSQL goes away again: readiness drops, and comes
back when it does. (The operator's start-up with the Kubernetes API away is in
tests/operator/test_operator_process.py.)"""

from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from deploy_support import Deployed
from web3 import Web3

from perpex_dev.devstack.accounts import FUNDING, KEEPER, anvil_key
from perpex_dev.devstack.fault_proxy import FaultProxy
from perpex_dev.devstack.ports import free_port
from perpex_dev.devstack.tcp_proxy import TcpProxy

REPO = Path(__file__).resolve().parents[2]
DOWN_S = 10.0
START_UP_METHODS = (
    "eth_chainId",
    "eth_getBalance",
    "eth_getTransactionCount",
    "eth_call",
    "eth_blockNumber",
    "eth_getBlockByNumber",
    "eth_getLogs",
    "txpool_content",
)


class Service:
    def __init__(self, name: str, argv: list[str], env: dict[str, str], health_port: int):
        self.name = name
        self.argv = argv
        self.env = env
        self.health_port = health_port
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self.proc = await asyncio.create_subprocess_exec(
            *self.argv,
            cwd=str(REPO),
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def ready(self) -> bool:
        try:
            async with httpx.AsyncClient(timeout=2.0) as client:
                resp = await client.get(f"http://127.0.0.1:{self.health_port}/readyz")
            return resp.status_code == 200
        except httpx.HTTPError:
            return False

    def tail(self) -> str:
        return f"--- {self.name}:\n" + "\n".join(self.lines[-25:])

    async def stop(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.terminate()
            try:
                await asyncio.wait_for(self.proc.wait(), 30)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._reader, 5)


async def _all(services: list[Service], want: bool, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        states = await asyncio.gather(*(s.ready() for s in services))
        if all(state is want for state in states):
            return
        for s in services:
            assert s.running, f"{s.name} exited\n{s.tail()}"
        await asyncio.sleep(0.25)
    states = await asyncio.gather(*(s.ready() for s in services))
    wrong = [s for s, state in zip(services, states, strict=True) if state is not want]
    raise AssertionError(
        f"not {'ready' if want else 'unready'}: {[s.name for s in wrong]}\n"
        + "\n".join(s.tail() for s in wrong)
    )


@contextlib.asynccontextmanager
async def _proxies(
    rpc_url: str, pg_port: int, kafka: str, names: list[str]
) -> AsyncIterator[tuple[TcpProxy, TcpProxy, dict[str, tuple[TcpProxy, FaultProxy]]]]:
    pg = await TcpProxy("127.0.0.1", pg_port).start(listening=False)
    broker = await TcpProxy.for_url(kafka).start(listening=False)
    rpcs: dict[str, tuple[TcpProxy, FaultProxy]] = {}
    try:
        for name in names:
            fault = FaultProxy(rpc_url, fail_status=500)
            await fault.start()
            for method in START_UP_METHODS:
                fault.fail_next[method] = 1
            rpcs[name] = (await TcpProxy.for_url(fault.url).start(listening=False), fault)
        yield pg, broker, rpcs
    finally:
        for tcp, fault in rpcs.values():
            await tcp.stop()
            await fault.stop()
        await pg.stop()
        await broker.stop()


async def test_services_wait_for_their_dependencies_and_ride_out_start_up_errors(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    dep_file = deployed.path
    pg_port = int(fresh_db.rsplit(":", 1)[1].split("/", 1)[0])
    names = ["indexer", "keeper", "funding"]
    base = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("OTEL_", "PERPEX_", "FUNDING_", "KEEPER_", "LEASE_", "POD_"))
        and k not in {"PRIVATE_KEY", "MARKETS", "POSITION_MANAGER_ADDRESS", "LEADER_ELECTION"}
    }
    async with _proxies(rpc_url, pg_port, kafka_bootstrap, names) as (pg, broker, rpcs):
        db_uri = fresh_db.replace(f":{pg_port}/", f":{pg.port}/")
        common = {
            **base,
            "CHAIN_ID": "31337",
            "DB_URI": db_uri,
            "KAFKA_BOOTSTRAP_SERVERS": broker.address,
            "KAFKA_TOPIC": topic,
            "DEPLOYMENT_FILE": str(dep_file),
            "POLL_INTERVAL_MS": "200",
            "MAX_RETRIES": "3",
            "DEPENDENCY_CHECK_S": "1",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
            "KEEPER_PRIVATE_KEY": anvil_key(KEEPER).get_secret_value(),
            "FUNDING_PRIVATE_KEY": anvil_key(FUNDING).get_secret_value(),
        }
        argv = [sys.executable, "-m", "perpex_cli.main"]
        services: list[Service] = []
        for name, cmd, extra in (
            ("indexer", ["indexer"], {"KAFKA_PARTITIONS": "3", "MARKETS": "ETH/USDT,BTC/USDT"}),
            ("keeper", ["keeper"], {"KEEPER_GROUP_ID": f"g-{uuid.uuid4().hex[:8]}"}),
            ("funding", ["funding", "run"], {"LEADER_ELECTION": "postgres"}),
        ):
            port = free_port()
            env = {
                **common,
                **extra,
                "RPC_URL": f"http://{rpcs[name][0].address}",
                "HEALTH_PORT": str(port),
            }
            services.append(Service(name, [*argv, *cmd], env, port))
        dash_port = free_port()
        services.append(
            Service(
                "dashboard",
                [*argv, "dashboard", "--host", "127.0.0.1", "--port", str(free_port())],
                {**common, "RPC_URL": "http://127.0.0.1:1", "HEALTH_PORT": str(dash_port)},
                dash_port,
            )
        )
        try:
            for s in services:
                await s.start()
            started = time.monotonic()
            # everything away: each waits, says for what, and is not ready
            for s in services:
                waited_for = ("PostgreSQL",) if s.name == "dashboard" else ("RPC", "PostgreSQL")
                if s.name == "keeper":
                    waited_for += ("broker",)
                for dep in waited_for:
                    with contextlib.suppress(AssertionError):
                        await _until(lambda s=s, d=dep: s.saw(f"waiting for {d} at"), DOWN_S)
                    assert s.saw(f"waiting for {dep} at"), s.tail()
            await _all(services, want=False, within=1.0)
            await asyncio.sleep(max(0.0, DOWN_S - (time.monotonic() - started)))
            for s in services:
                assert s.running, s.tail()
            # back: each becomes ready by itself, through one HTTP 500 per start-up method
            for tcp, _ in rpcs.values():
                await tcp.up()
            await pg.up()
            await broker.up()
            await _all(services, want=True, within=90.0)
            for name in names:
                fault = rpcs[name][1]
                called = {m for m in START_UP_METHODS if fault.seen[m]}
                refused = {m for m in START_UP_METHODS if fault.failed[m]}
                assert called == refused, (name, called, refused)  # each met its one 500
                assert {"eth_chainId", "eth_call"} <= called, (name, called)
            keeper_fault = rpcs["keeper"][1]
            assert keeper_fault.failed["eth_getBalance"] == 1
            assert keeper_fault.failed["eth_getTransactionCount"] == 1

            # PostgreSQL goes away: readiness drops (probed every DEPENDENCY_CHECK_S), and returns
            await pg.down()
            await _all(services, want=False, within=10.0)
            await pg.up()
            await _all(services, want=True, within=60.0)
            for s in services:
                assert s.running, s.tail()
            tracebacks = [
                f"--- {s.name}:\n" + "\n".join(s.lines[max(0, i - 3) : i + 30])
                for s in services
                for i, line in enumerate(s.lines)
                if "Traceback" in line
            ]
            assert not tracebacks, "\n".join(tracebacks[:3])
        finally:
            for s in services:
                await s.stop()
    codes = {s.name: s.proc.returncode for s in services if s.proc is not None}
    assert codes == {"indexer": 0, "keeper": 0, "funding": 0, "dashboard": 0}, "\n".join(
        s.tail() for s in services
    )


async def _until(predicate: object, within: float) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        await asyncio.sleep(0.1)
    raise AssertionError("condition not met")
