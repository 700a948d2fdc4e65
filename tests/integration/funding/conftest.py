"""Fixtures of the funding updater's integration tests: the session's deployment (each test
reverts to it through `chain`) and kmock's Kubernetes API emulator with Leases."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import kmock as km
import pytest
from deploy_support import Deployed
from funding_support import LEASES, Chain, StrictLeaseEmulator
from web3 import Web3

from shared.chain.deployment import Deployment


@pytest.fixture(scope="module")
def deployment_file(session_deployment: Deployed, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("funding") / "deployment.json"
    shutil.copyfile(session_deployment.path, path)
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
