"""Fixtures for the contract tests: a private anvil (only anvil, not the whole local stack)
and a fresh deployment made with contracts/script/Deploy.s.sol through deploy_local."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from web3 import Web3

from perpex_dev.anvil import DEV_KEYS, AnvilProcess, run_anvil
from shared.chain.deploy import deploy_local
from shared.chain.deployment import Deployment


@pytest.fixture(scope="module")
def contracts_anvil() -> Iterator[AnvilProcess]:
    with run_anvil() as anvil:
        yield anvil


@pytest.fixture(scope="module")
def contracts_w3(contracts_anvil: AnvilProcess) -> Web3:
    return Web3(Web3.HTTPProvider(contracts_anvil.url, request_kwargs={"timeout": 30}))


@pytest.fixture(scope="module")
def deployment(
    contracts_anvil: AnvilProcess, tmp_path_factory: pytest.TempPathFactory
) -> Deployment:
    out: Path = tmp_path_factory.mktemp("deploy") / "deployment.json"
    return deploy_local(contracts_anvil.url, DEV_KEYS[0], out)
