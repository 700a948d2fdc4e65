"""Helpers for the keeper's integration tests: trade, run the real indexer in-process, run
keepers in-process or as `perpex keeper` subprocesses, read the chain. Tests on the session's
anvil take its deployment from the `deployed` fixture (tests/conftest.py); `deploy` runs the
deploy flow again (a chain of a test's own)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from web3 import Web3

from perpex_dev.devstack.accounts import anvil_key
from perpex_dev.devstack.market import LocalMarket
from services.indexer.app import open_app
from services.indexer.settings import IndexerSettings
from services.keeper.app import Keeper
from services.keeper.settings import KeeperSettings, load_keeper_settings
from shared.chain.abi import load_abi
from shared.chain.deploy import deploy_local
from shared.chain.deployment import Deployment
from shared.health import HealthState

WAD = 10**18
ETH, BTC = "ETH/USDT", "BTC/USDT"
KEEPER_KEY = 1
FUNDING_KEY = 2


def deploy(rpc_url: str, folder: Path) -> tuple[Deployment, Path]:
    """Deploy with the project's deploy flow (a `forge script` run)."""
    path = folder / f"deployment-{uuid.uuid4().hex[:6]}.json"
    return deploy_local(rpc_url, anvil_key(0), path), path


def rpc(w3: Web3, method: str, params: list[Any] | None = None) -> Any:
    resp = w3.provider.make_request(method, params or [])  # type: ignore[arg-type]
    if "error" in resp:
        raise RuntimeError(f"{method}: {resp['error']}")
    return resp.get("result")


def address_of(key_index: int) -> str:
    return Web3().eth.account.from_key(anvil_key(key_index).get_secret_value()).address


@dataclass
class Book:
    """What the test opened: token id -> (pair, is_long, leverage)."""

    positions: dict[int, tuple[str, bool, int]]

    def tokens(self, pred: Callable[[str, bool, int], bool] = lambda *_: True) -> set[int]:
        return {t for t, (p, long_, lev) in self.positions.items() if pred(p, long_, lev)}


def open_positions(
    market: LocalMarket, spec: list[tuple[str, bool, int]], trader_index: int = 3
) -> Book:
    """Open one position per (pair, is_long, leverage x) with 1,000 vUSDT collateral each."""
    trader = market.w3.eth.accounts[trader_index]
    market.fund(trader, 2_000 * WAD * max(1, len(spec)))
    out: dict[int, tuple[str, bool, int]] = {}
    for pair, is_long, lev in spec:
        opened = market.open(trader, pair, is_long, 1_000 * WAD, lev * WAD)
        out[opened.token_id] = (pair, is_long, lev)
    return Book(out)


def crash(market: LocalMarket, pair: str, fraction: float) -> None:
    """Move `pair`'s oracle price by `fraction` (e.g. -0.06) in one transaction."""
    price = market.price(pair)
    market.set_price(pair, int(price * (1 + fraction)))


def liquidations(w3: Web3, deployment: Deployment, from_block: int = 0) -> list[dict[str, Any]]:
    pm = w3.eth.contract(
        address=deployment.contracts.position_manager, abi=load_abi("PositionManager")
    )
    logs = pm.events.PositionLiquidated().get_logs(from_block=from_block)
    return [
        dict(lg["args"]) | {"blockNumber": lg["blockNumber"], "tx": lg["transactionHash"]}
        for lg in logs
    ]


def health_of(w3: Web3, deployment: Deployment, tokens: list[int]) -> dict[int, tuple[Any, ...]]:
    pm = w3.eth.contract(
        address=deployment.contracts.position_manager, abi=load_abi("PositionManager")
    )
    return {h[0]: tuple(h) for h in pm.functions.getPositionsHealth(tokens).call()}


def txs_from(w3: Web3, address: str, from_block: int) -> list[dict[str, Any]]:
    """Every mined transaction sent by `address` since `from_block`, with its receipt status."""
    out = []
    for n in range(from_block, w3.eth.block_number + 1):
        block = w3.eth.get_block(n, full_transactions=True)
        for tx in block["transactions"]:
            if tx["from"] == address:
                receipt = w3.eth.get_transaction_receipt(tx["hash"])
                out.append({"tx": tx, "status": receipt["status"], "block": n})
    return out


def indexer_settings(
    rpc_url: str, dsn: str, bootstrap: str, topic: str, dep_file: Path
) -> IndexerSettings:
    return IndexerSettings(
        rpc_url=rpc_url,
        db_uri=dsn,
        kafka_bootstrap_servers=bootstrap,
        kafka_topic=topic,
        deployment_file=dep_file,
        poll_interval_ms=100,
        max_retries=3,
        markets="",
        position_manager_address=None,
        position_nft_address=None,
        kafka_partitions=3,
    )


@contextlib.asynccontextmanager
async def running_indexer(settings: IndexerSettings) -> AsyncIterator[Any]:
    """The real indexer, in-process, until the block exits."""
    stop = asyncio.Event()
    async with open_app(settings, lock_wait=30) as app:
        task = asyncio.create_task(app.run(stop), name="indexer")
        try:
            yield app
        finally:
            stop.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 20)


async def wait_indexed(app: Any, w3: Web3, within: float = 30.0) -> None:
    """Until the indexer has synced the current head and drained its outbox."""
    head = w3.eth.block_number
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        status = app.indexer.status()
        last = status.get("last_block") or status.get("last_synced_block") or -1
        if last >= head and await app.store.outbox.pending_messages() == 0:
            return
        await asyncio.sleep(0.1)
    raise AssertionError(f"indexer did not reach block {head}: {app.indexer.status()}")


def keeper_settings(
    rpc_url: str,
    dsn: str,
    bootstrap: str,
    topic: str,
    dep_file: Path,
    group: str,
    key_index: int = KEEPER_KEY,
    **over: Any,
) -> KeeperSettings:
    values: dict[str, Any] = {
        "rpc_url": rpc_url,
        "db_uri": dsn,
        "kafka_bootstrap_servers": bootstrap,
        "kafka_topic": topic,
        "deployment_file": dep_file,
        "keeper_private_key": anvil_key(key_index).get_secret_value(),
        "funding_private_key": anvil_key(FUNDING_KEY).get_secret_value(),
        "private_key": None,
        "keeper_group_id": group,
        "poll_interval_ms": 100,
        "max_retries": 4,
        "replace_after_s": 5.0,
        "shutdown_timeout_s": 10.0,
        "in_flight_wait_s": 30.0,
        "markets": "",
        "position_manager_address": None,
    }
    values.update(over)
    return load_keeper_settings(**values)


@contextlib.asynccontextmanager
async def running_keeper(settings: KeeperSettings) -> AsyncIterator[Keeper]:
    keeper = Keeper(settings, HealthState())
    await keeper.start()
    task = asyncio.create_task(keeper.run(), name="keeper")
    try:
        yield keeper
    finally:
        keeper.stop()
        with contextlib.suppress(BaseException):
            await asyncio.wait_for(task, 30)


async def wait_until(predicate: Callable[[], Any], within: float = 30.0, every: float = 0.1) -> Any:
    deadline = time.monotonic() + within
    last: Any = None
    while time.monotonic() < deadline:
        last = predicate()
        if asyncio.iscoroutine(last):
            last = await last
        if last:
            return last
        await asyncio.sleep(every)
    raise AssertionError(f"condition not met within {within}s (last: {last!r})")


async def wait_ready(keeper: Keeper, within: float = 30.0) -> None:
    await wait_until(lambda: keeper.health.ready, within)


def keeper_env(settings: KeeperSettings, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OTEL_", "PERPEX_"))}
    key = settings.wallet_key("keeper")
    funding = settings.wallet_key("funding")
    assert key is not None and funding is not None
    env.update(
        {
            "RPC_URL": settings.rpc_url,
            "DB_URI": settings.db_uri,
            "KAFKA_BOOTSTRAP_SERVERS": settings.kafka_bootstrap_servers,
            "KAFKA_TOPIC": settings.kafka_topic,
            "DEPLOYMENT_FILE": str(settings.deployment_file),
            "KEEPER_PRIVATE_KEY": key.get_secret_value(),
            "FUNDING_PRIVATE_KEY": funding.get_secret_value(),
            "KEEPER_GROUP_ID": settings.keeper_group_id,
            "POLL_INTERVAL_MS": str(settings.poll_interval_ms),
            "REPLACE_AFTER_S": str(settings.replace_after_s),
            "SHUTDOWN_TIMEOUT_S": str(settings.shutdown_timeout_s),
            "IN_FLIGHT_WAIT_S": str(settings.in_flight_wait_s),
            "HEALTH_PORT": "0",
            "LOG_LEVEL": "INFO",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


KEEPER_ARGV = [sys.executable, "-m", "perpex_cli.main", "keeper"]


def quiet_kafka_logs() -> None:
    logging.getLogger("aiokafka").setLevel(logging.ERROR)


def crash_and_mine(market: LocalMarket, pair: str, fraction: float) -> int:
    """With automine off: send the price move, mine it alone in a block; returns the block."""
    price = market.price(pair)
    market.feed(pair).functions.setPrice(int(price * (1 + fraction))).transact(
        {"from": market.d.deployer}
    )
    rpc(market.w3, "evm_mine")
    return int(market.w3.eth.block_number)


@contextlib.contextmanager
def automine_off(w3: Web3) -> Any:
    rpc(w3, "evm_setAutomine", [False])
    try:
        yield
    finally:
        rpc(w3, "evm_setAutomine", [True])


REPO = Path(__file__).resolve().parents[3]


class KeeperProcess:
    def __init__(self, env: dict[str, str]):
        self.env = env
        self.lines: list[str] = []
        self.proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> KeeperProcess:
        self.proc = await asyncio.create_subprocess_exec(
            *KEEPER_ARGV,
            cwd=str(REPO),
            env=self.env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
        )
        self._reader = asyncio.create_task(self._read())
        return self

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        while line := await self.proc.stderr.readline():
            self.lines.append(line.decode(errors="replace").rstrip())

    def saw(self, text: str) -> bool:
        return any(text in line for line in self.lines)

    async def wait_for(self, text: str, within: float = 60.0) -> None:
        try:
            await wait_until(lambda: self.saw(text), within=within)
        except AssertionError:
            raise AssertionError(
                f"keeper never logged {text!r}; output:\n" + "\n".join(self.lines[-40:])
            ) from None

    async def wait_exit(self, within: float) -> int:
        assert self.proc is not None
        code = await asyncio.wait_for(self.proc.wait(), within)
        if self._reader is not None:
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(self._reader, 5)
        return code

    async def kill(self) -> None:
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.wait_exit(10)
