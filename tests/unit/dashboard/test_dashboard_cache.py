from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from services.dashboard.cache import QueryCache


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def counter() -> tuple[list[int], Callable[[], Awaitable[int]]]:
    calls: list[int] = []

    async def compute() -> int:
        calls.append(1)
        await asyncio.sleep(0)
        return len(calls)

    return calls, compute


async def test_answers_are_reused_until_ttl() -> None:
    clock = Clock()
    cache = QueryCache(ttl=2, clock=clock)
    _, compute = counter()
    assert await cache.get("k", compute) == 1
    assert await cache.get("k", compute) == 1
    assert await cache.get("other", compute) == 2
    clock.now += 2.5
    assert await cache.get("k", compute) == 3
    # "other" expired too: dropped when the new answer was stored
    assert cache.stats() == {"entries": 1, "hits": 1, "shared": 0, "misses": 3}


async def test_concurrent_identical_requests_share_one_query() -> None:
    cache = QueryCache(ttl=2)
    gate = asyncio.Event()
    calls = 0

    async def slow() -> str:
        nonlocal calls
        calls += 1
        await gate.wait()
        return "answer"

    waiters = [asyncio.create_task(cache.get(("positions", 1), slow)) for _ in range(10)]
    await asyncio.sleep(0.01)
    gate.set()
    assert await asyncio.gather(*waiters) == ["answer"] * 10
    assert calls == 1 and cache.shared == 9


async def test_invalidate_drops_answers_and_running_queries() -> None:
    cache = QueryCache(ttl=60)
    gate = asyncio.Event()
    results = iter(["stale", "fresh"])

    async def compute() -> str:
        value = next(results)
        if value == "stale":
            await gate.wait()
        return value

    before = asyncio.create_task(cache.get("k", compute))
    await asyncio.sleep(0.01)
    cache.invalidate()  # an event arrived while the first query ran
    assert await cache.get("k", compute) == "fresh"  # did not join the stale query
    gate.set()
    assert await before == "stale"  # its own caller still gets an answer...
    assert await cache.get("k", compute) == "fresh"  # ...but it was not stored


async def test_failures_are_shared_and_not_cached() -> None:
    cache = QueryCache(ttl=60)
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0)
        if attempts == 1:
            raise OSError("database down")
        return "ok"

    with pytest.raises(OSError):
        await cache.get("k", flaky)
    assert await cache.get("k", flaky) == "ok"


async def test_a_cancelled_waiter_does_not_cancel_the_query() -> None:
    cache = QueryCache(ttl=60)
    gate = asyncio.Event()

    async def slow() -> str:
        await gate.wait()
        return "done"

    first = asyncio.create_task(cache.get("k", slow))
    second = asyncio.create_task(cache.get("k", slow))
    await asyncio.sleep(0.01)
    first.cancel()
    gate.set()
    assert await second == "done"
    with pytest.raises(asyncio.CancelledError):
        await first


async def test_entries_are_bounded_and_ttl_zero_disables() -> None:
    clock = Clock()
    cache = QueryCache(ttl=5, max_entries=3, clock=clock)
    _, compute = counter()
    for key in range(10):
        await cache.get(key, compute)
        assert cache.stats()["entries"] <= 3
    clock.now += 6  # all expired: the next answer stored leaves only itself
    await cache.get("late", compute)
    assert cache.stats()["entries"] == 1
    off = QueryCache(ttl=0)
    calls, compute = counter()
    await off.get("k", compute)
    await off.get("k", compute)
    assert len(calls) == 2
