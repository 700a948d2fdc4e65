"""Fixtures of `perpex trade`'s integration tests: one deployment on the session's anvil per
module (made with the deploy script, like `perpex deploy`); each test reverts to it."""

from __future__ import annotations

from pathlib import Path

import pytest
from trade_support import Trading
from web3 import Web3

from perpex_dev.devstack.accounts import DEPLOYER, anvil_key
from shared.chain.deploy import deploy_local


@pytest.fixture(scope="module")
def trade_deployment(rpc_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("trade") / "deployment.json"
    deploy_local(rpc_url, anvil_key(DEPLOYER), path)
    return path


@pytest.fixture
def trading(chain: Web3, rpc_url: str, trade_deployment: Path) -> Trading:
    """The deployment, reverted after the test."""
    return Trading(chain, rpc_url, trade_deployment)
