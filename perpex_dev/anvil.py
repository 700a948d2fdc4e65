"""A throwaway anvil on a free 127.0.0.1 port, for tests and benchmarks: the devstack's anvil
component alone, in a temporary folder."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

from perpex_dev.devstack.accounts import ANVIL_KEYS
from perpex_dev.devstack.ephemeral import ephemeral_stack

# anvil's well-known development keys (mnemonic "test test ... junk"); local chains only.
DEV_KEYS = ANVIL_KEYS


@dataclass(frozen=True)
class AnvilProcess:
    url: str
    port: int
    pid: int


@contextlib.contextmanager
def run_anvil(block_time: float | None = None) -> Iterator[AnvilProcess]:
    """Start anvil, wait until it answers eth_chainId, yield it, stop it."""
    with ephemeral_stack(components=("anvil",), block_time=block_time) as stack:
        record = stack.anvil.record()
        assert record is not None
        yield AnvilProcess(url=stack.anvil.url, port=stack.config.anvil_port, pid=record.pid)
