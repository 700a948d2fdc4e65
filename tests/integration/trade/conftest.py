"""Fixtures of `perpex trade`'s integration tests: the session's deployment on its anvil (made
with the deploy script, like `perpex deploy`; tests/conftest.py); each test reverts to it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from deploy_support import Deployed
from trade_support import Trading
from web3 import Web3


@pytest.fixture(scope="module")
def trade_deployment(
    session_deployment: Deployed, tmp_path_factory: pytest.TempPathFactory
) -> Path:
    path = tmp_path_factory.mktemp("trade") / "deployment.json"
    shutil.copyfile(session_deployment.path, path)
    return path


@pytest.fixture
def trading(chain: Web3, rpc_url: str, trade_deployment: Path) -> Trading:
    """The deployment, reverted after the test."""
    return Trading(chain, rpc_url, trade_deployment)
