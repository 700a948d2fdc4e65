"""A short-lived, single-flight cache for API answers.

Every open page re-reads the API after each live event, so N browsers would run the same
queries N times per event. Here identical requests share one query while it runs, and its
answer for `ttl` seconds; the Kafka feed calls `invalidate()` before it pushes an event, so a
page re-reading because of that event never gets an answer computed before it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Hashable
from typing import Any


class QueryCache:
    def __init__(
        self,
        ttl: float = 2.0,
        max_entries: int = 256,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.ttl = ttl
        self.max_entries = max_entries
        self._clock = clock
        self._done: dict[Hashable, tuple[float, Any]] = {}
        self._inflight: dict[Hashable, asyncio.Task[Any]] = {}
        self.generation = 0
        self.hits = 0
        self.shared = 0
        self.misses = 0

    def invalidate(self) -> None:
        """Forget every answer, and let new requests start fresh queries rather than join
        ones already running (their answers may predate what caused the invalidation)."""
        self.generation += 1
        self._done.clear()
        self._inflight.clear()

    async def get(self, key: Hashable, compute: Callable[[], Awaitable[Any]]) -> Any:
        hit = self._done.get(key)
        if hit is not None and hit[0] > self._clock():
            self.hits += 1
            return hit[1]
        task = self._inflight.get(key)
        if task is None:
            self.misses += 1
            task = asyncio.create_task(self._fill(key, compute, self.generation))
            # A failure nobody waits for any more must not be reported as "never retrieved".
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            self._inflight[key] = task
        else:
            self.shared += 1
        # shield: one client going away does not cancel the query the others wait for.
        return await asyncio.shield(task)

    async def _fill(
        self, key: Hashable, compute: Callable[[], Awaitable[Any]], generation: int
    ) -> Any:
        try:
            value = await compute()
            if generation == self.generation and self.ttl > 0:
                # Expired answers go at every insert, not only when the cache is full: on a
                # quiet system (no event clears it) they would otherwise stay, up to
                # max_entries answers of thousands of rows each.
                now = self._clock()
                self._done = {k: v for k, v in self._done.items() if v[0] > now}
                if len(self._done) >= self.max_entries:
                    self._done.clear()
                self._done[key] = (now + self.ttl, value)
            return value
        finally:
            if self._inflight.get(key) is asyncio.current_task():
                del self._inflight[key]

    def peek(self, key: Hashable) -> Any | None:
        """A stored answer that is still fresh, or None (counted as a hit or a miss)."""
        hit = self._done.get(key)
        if hit is not None and hit[0] > self._clock():
            self.hits += 1
            return hit[1]
        self.misses += 1
        return None

    def put(self, key: Hashable, value: Any) -> None:
        """Store an answer computed elsewhere (e.g. a GraphQL execution) for `ttl` seconds."""
        if self.ttl <= 0:
            return
        now = self._clock()
        self._done = {k: v for k, v in self._done.items() if v[0] > now}
        if len(self._done) >= self.max_entries:
            self._done.clear()
        self._done[key] = (now + self.ttl, value)

    def stats(self) -> dict[str, int]:
        return {
            "entries": len(self._done),
            "hits": self.hits,
            "shared": self.shared,
            "misses": self.misses,
        }
