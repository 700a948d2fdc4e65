"""PendingSimulator with a fake node: concurrent requests share one pending-block call (the
simulator's code in the state override), a slow answer does not hold everything back, and a
node that refuses the batch call gets one call per liquidation."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any, cast

import pytest
from eth_abi import decode, encode
from web3 import AsyncWeb3

from services.keeper import pending as pending_mod
from services.keeper.pending import SIMULATOR_ADDRESS, PendingSimulator, SimResult

PM = "0x" + "0c" * 20
ME = "0x" + "aa" * 20


class FakeProvider:
    def __init__(self, delays: list[float] | None = None, error: dict[str, Any] | None = None):
        self.batches: list[list[int]] = []
        self.params: list[Any] = []
        self.delays = list(delays or [])
        self.error = error
        self.concurrent = 0
        self.max_concurrent = 0

    async def make_request(self, method: str, params: list[Any]) -> dict[str, Any]:
        assert method == "eth_call"
        self.params.append(params)
        if self.error is not None:
            return {"jsonrpc": "2.0", "id": 1, "error": self.error}
        call, block, override = params
        assert block == "pending" and call["to"] == SIMULATOR_ADDRESS and call["from"] == ME
        assert override[SIMULATOR_ADDRESS]["code"].startswith("0x")
        pm, ids = decode(["address", "uint256[]"], bytes.fromhex(call["data"][10:]))
        assert pm.lower() == PM
        self.batches.append(list(ids))
        self.concurrent += 1
        self.max_concurrent = max(self.max_concurrent, self.concurrent)
        try:
            await asyncio.sleep(self.delays.pop(0) if self.delays else 0.001)
        finally:
            self.concurrent -= 1
        # even ids liquidate (closed = id, reward = 2 x id), odd ones revert with 0xdead
        ok = [i % 2 == 0 for i in ids]
        out = [
            encode(["uint256", "uint256"], [i, 2 * i]) if i % 2 == 0 else b"\xde\xad" for i in ids
        ]
        return {
            "jsonrpc": "2.0",
            "id": 1,
            "result": "0x" + encode(["bool[]", "bytes[]"], [ok, out]).hex(),
        }


def _sim(provider: FakeProvider, singles: list[int] | None = None) -> PendingSimulator:
    async def single(token: int) -> SimResult:
        if singles is not None:
            singles.append(token)
        return SimResult(True, encode(["uint256", "uint256"], [token, 0]))

    w3 = cast(AsyncWeb3, SimpleNamespace(provider=provider))
    return PendingSimulator(w3, PM, ME, single, max_retries=1)


async def test_concurrent_requests_share_one_pending_call() -> None:
    provider = FakeProvider()
    sim = _sim(provider)
    results = await asyncio.gather(*(sim.simulate(t) for t in range(10)))
    assert provider.batches == [list(range(10))]
    assert [r.ok for r in results] == [t % 2 == 0 for t in range(10)]
    assert decode(["uint256", "uint256"], results[4].data) == (4, 8)
    assert results[3].data == b"\xde\xad"
    assert (sim.calls, sim.simulated) == (1, 10)


async def test_requests_arriving_during_a_call_make_the_next_batch(monkeypatch: Any) -> None:
    provider = FakeProvider(delays=[0.05, 0.001])
    sim = _sim(provider)
    first = asyncio.gather(*(sim.simulate(t) for t in range(3)))
    await asyncio.sleep(0.01)  # the first call is out
    later = asyncio.gather(*(sim.simulate(t) for t in range(3, 8)))
    await asyncio.gather(first, later)
    assert provider.batches == [[0, 1, 2], [3, 4, 5, 6, 7]]
    assert provider.max_concurrent == 1


async def test_at_most_max_batch_per_call() -> None:
    provider = FakeProvider()
    sim = _sim(provider)
    await asyncio.gather(*(sim.simulate(t) for t in range(70)))
    assert [len(b) for b in provider.batches] == [32, 32, 6]


async def test_a_slow_answer_does_not_hold_everything_back(monkeypatch: Any) -> None:
    monkeypatch.setattr(pending_mod, "STALL_S", 0.05)
    provider = FakeProvider(delays=[1.0, 0.001])
    sim = _sim(provider)
    slow = asyncio.ensure_future(sim.simulate(0))
    await asyncio.sleep(0.01)
    t0 = asyncio.get_running_loop().time()
    assert (await sim.simulate(2)).ok
    assert asyncio.get_running_loop().time() - t0 < 0.5  # went out beside the slow one
    assert provider.max_concurrent == 2
    assert (await slow).ok


async def test_a_node_refusing_the_batch_call_gets_one_call_each() -> None:
    provider = FakeProvider(error={"code": -32602, "message": "state override not supported"})
    singles: list[int] = []
    sim = _sim(provider, singles)
    results = await asyncio.gather(*(sim.simulate(t) for t in (1, 2, 3)))
    assert all(r.ok for r in results) and sorted(singles) == [1, 2, 3]
    assert not sim.batching
    assert (await sim.simulate(9)).ok and singles[-1] == 9
    assert len(provider.params) == 1  # never asked again


async def test_a_transient_error_is_retried_then_reported() -> None:
    provider = FakeProvider(error={"code": -32000, "message": "429 too many requests"})
    sim = _sim(provider)
    with pytest.raises(RuntimeError, match="429"):
        await sim.simulate(2)
    assert len(provider.params) == 2 and sim.batching  # max_retries=1: two attempts
