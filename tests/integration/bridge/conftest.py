from __future__ import annotations

from collections.abc import Iterator

import pytest
from bridge_support import RELAYER_ADDRESS, BridgeEnv

from perpex_dev.devstack.accounts import ANVIL_KEYS, DEPLOYER
from perpex_dev.devstack.ephemeral import ephemeral_stack
from shared.chain.deploy import deploy_bridge, deploy_local


@pytest.fixture(scope="module")
def bridged(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BridgeEnv]:
    """anvil (home, 31337) and anvil-remote (31338) started by the devstack, the protocol on
    the home chain and the bridge on both, deployed with the project's deploy flow."""
    workdir = tmp_path_factory.mktemp("bridge")
    with ephemeral_stack(components=("anvil", "anvil-remote")) as stack:
        path = workdir / "deployment.json"
        deploy_local(stack.anvil.url, ANVIL_KEYS[DEPLOYER], path)
        deployment = deploy_bridge(
            stack.anvil.url, stack.remote_anvil.url, ANVIL_KEYS[DEPLOYER], path,
            relayer=RELAYER_ADDRESS,
        )  # fmt: skip
        yield BridgeEnv(stack, deployment, path, workdir)
