"""Keeper integration tests share the session's anvil with other suites."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from web3 import Web3


@pytest.fixture(autouse=True)
def _sane_base_fee(w3: Web3) -> Iterator[None]:
    """anvil keeps its next base fee across evm_revert: a test that spiked it (ours, or the
    sender's stuck-transaction test) would leave it high for the next test's transactions.
    Start and end every keeper test from anvil's default 1 gwei."""
    w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(10**9)])  # type: ignore[arg-type]
    yield
    w3.provider.make_request("anvil_setNextBlockBaseFeePerGas", [hex(10**9)])  # type: ignore[arg-type]
