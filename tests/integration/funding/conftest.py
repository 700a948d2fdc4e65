"""Fixtures of the funding updater's integration tests: a deployment on the session's anvil
(each test reverts to it through `chain`) and kmock's Kubernetes API emulator with Leases."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock as km
import pytest
from funding_support import LEASES, Chain, StrictLeaseEmulator
from web3 import Web3

from perpex_dev.devstack.accounts import DEPLOYER, anvil_key
from shared.chain.deploy import deploy_local
from shared.chain.deployment import Deployment


@pytest.fixture(scope="module")
def deployment_file(rpc_url: str, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("funding") / "deployment.json"
    deploy_local(rpc_url, anvil_key(DEPLOYER), path)
    return path


@pytest.fixture(scope="module")
def deployment(deployment_file: Path) -> Deployment:
    return Deployment.load(deployment_file)


@pytest.fixture
def funded(chain: Web3, deployment: Deployment) -> Chain:
    """The deployment on a chain reverted after the test."""
    return Chain(chain, deployment)


@pytest.fixture
def kmock_options(kmock_options: dict[str, Any]) -> dict[str, Any]:
    return {**kmock_options, "cls": StrictLeaseEmulator}


@pytest.fixture
def kube(kmock: km.KubernetesEmulator) -> Iterator[km.KubernetesEmulator]:
    kmock.resources[LEASES] = km.ResourceInfo(
        kind="Lease",
        namespaced=True,
        verbs=["get", "list", "watch", "create", "patch", "update", "delete"],
    )
    yield kmock
