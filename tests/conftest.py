"""Session fixtures: a real anvil, a real PostgreSQL and a real Kafka-protocol broker on free
127.0.0.1 ports, started by the project's own devstack code and stopped after the session.

Per-test isolation: `fresh_db` is a new empty database, `topic` a new topic, `chain` reverts
anvil to a snapshot after the test.

The protocol is deployed once per session on that anvil (`session_deployment`: the project's
deploy flow, contracts/script/Deploy.s.sol through deploy_local, as `perpex deploy` runs it).
`deployed` hands a test that deployment on a chain reverted after the test (through `chain`),
with its own copy of the deployment file: the same chain a deploy inside the test left, without
a `forge script` run per test.

Markers by folder: everything under tests/integration/ and tests/contracts/ (real anvil,
PostgreSQL, broker, forge scripts) is `integration`; `scripts/test.sh --fast` runs the rest.
A test skipped because a tool is missing (reason starting with TOOL_MISSING: the Helm engine,
Chromium) fails instead under CI=true, where scripts/bootstrap.sh must have installed it.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from deploy_support import Deployed
from web3 import Web3

from perpex_dev.devstack.accounts import DEPLOYER, anvil_key
from perpex_dev.devstack.ephemeral import ephemeral_stack
from perpex_dev.devstack.stack import LocalStack
from shared.chain.deploy import deploy_local
from shared.chain.deployment import Deployment

TESTS = Path(__file__).resolve().parent
INTEGRATION_DIRS = (TESTS / "integration", TESTS / "contracts")
TOOL_MISSING = "tool missing: "


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        path = Path(str(item.fspath)).resolve()
        if any(path.is_relative_to(d) for d in INTEGRATION_DIRS):
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Any:
    outcome = yield
    report = outcome.get_result()
    if not (report.skipped and _in_ci()):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    if TOOL_MISSING in reason:
        report.outcome = "failed"
        report.longrepr = f"CI=true, so a missing tool fails the run: {reason}"


@pytest.fixture(scope="session")
def stack() -> Iterator[LocalStack]:
    with ephemeral_stack() as s:
        yield s


@pytest.fixture(scope="session")
def rpc_url(stack: LocalStack) -> str:
    return stack.anvil.url


@pytest.fixture(scope="session")
def kafka_bootstrap(stack: LocalStack) -> str:
    return stack.broker.url


@pytest.fixture(scope="session")
def w3(rpc_url: str) -> Web3:
    return Web3(Web3.HTTPProvider(rpc_url, request_kwargs={"timeout": 30}))


@pytest.fixture
def chain(w3: Web3) -> Iterator[Web3]:
    """anvil, reverted to its state before the test when the test ends."""
    snapshot = w3.provider.make_request("evm_snapshot", [])["result"]  # type: ignore[arg-type]
    try:
        yield w3
    finally:
        w3.provider.make_request("evm_revert", [snapshot])  # type: ignore[arg-type]
        # anvil keeps a spiked next base fee and automine settings across evm_revert.
        w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(10**9)])  # type: ignore[arg-type]
        w3.provider.make_request("evm_setAutomine", [True])  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def session_deployment(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Deployed:
    """ETH/USDT and BTC/USDT deployed by the deployer (account 0) on the session's anvil, once.

    Session-scoped fixtures are set up before function-scoped ones, so the deployment is on the
    chain before any test's `chain` snapshot, and no revert removes it."""
    path = tmp_path_factory.mktemp("session-deployment") / "deployment.json"
    return Deployed(deploy_local(stack.anvil.url, anvil_key(DEPLOYER), path), path)


@pytest.fixture
def deployed(chain: Web3, session_deployment: Deployed, tmp_path: Path) -> Deployed:
    """The session's deployment, on a chain reverted after the test; the file is the test's own
    copy under a unique name (tests derive topic names from it)."""
    code = chain.eth.get_code(session_deployment.deployment.contracts.position_manager)
    assert code, "the session deployment is not on the chain"
    path = tmp_path / f"deployment-{uuid.uuid4().hex[:6]}.json"
    shutil.copyfile(session_deployment.path, path)
    return Deployed(Deployment.load(path), path)


@pytest.fixture
async def fresh_db(stack: LocalStack) -> AsyncIterator[str]:
    """DSN of a new, empty database, dropped after the test."""
    name = f"t_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(stack.postgres.admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    cfg = stack.config
    yield f"postgresql://{cfg.db_user}@{cfg.host}:{cfg.postgres_port}/{name}"
    admin = await asyncpg.connect(stack.postgres.admin_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def topic(kafka_bootstrap: str) -> str:
    """A new topic with 3 partitions, unique to the test."""
    from aiokafka.admin import AIOKafkaAdminClient, NewTopic

    name = f"t-{uuid.uuid4().hex[:12]}"
    admin = AIOKafkaAdminClient(bootstrap_servers=kafka_bootstrap)
    await admin.start()
    try:
        await admin.create_topics([NewTopic(name, num_partitions=3, replication_factor=1)])
    finally:
        await admin.close()
    await asyncio.sleep(0)
    return name
