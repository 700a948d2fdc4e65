"""The send window: how many of this keeper's liquidations may be between their pending-block
simulation and their broadcast at once.

The pending-block simulation sees a competitor's liquidation only once it has reached the node.
Two keepers that found the same positions liquidatable in the same block (they poll the same
chain) go through them in orders of their own (races.dispatch_order); a position both simulate
while neither has broadcast is sent twice, and one transaction reverts. How often that happens
grows with the number of liquidations each keeper holds between simulation and broadcast:
measured with two keepers over 200 liquidations in waves of 15-73 per block
(tests/integration/keeper/test_keeper_competition_scale.py) with LIQUIDATION_CONCURRENCY as
the only limit, 32 at once reverted ~20 % of the sends, 8 ~12 %, 4 ~7 %, 1 ~2 %. One at a
time costs throughput (each liquidation waits for the previous one's simulation and broadcast,
and each pending-block call executes everything the node holds for the next block), which a
keeper alone should not pay. So the window works like TCP's congestion window:

- a block whose round starts liquidations while none is in the window starts it at
  sqrt(backlog / 8) (1 below 16 liquidations, 3 for 73, 7 for 500), and every `limit`
  simulations that come back clean (the liquidation is sent) widen it by one, up to
  LIQUIDATION_CONCURRENCY (one more per round trip: TCP's congestion avoidance). Why the
  square root: two keepers at width w going through the same N positions in independent
  orders both simulate a position neither has broadcast about w^2/N times per round trip, and
  one of them sees the other (a lost race) once about sqrt(2N) have been sent between them:
  about w x sqrt(2/N) collisions before the first lost race in theory, several times that
  measured (a broadcast reaches the other's simulations only a round trip later). In the
  competition test's first wave (73 positions) a start at 6 cost 3-7 reverts, at 3 0-2; the
  benchmark's lone keeper (500 liquidations from 7, 2 s blocks) still needed 3 blocks. A
  burst still going through keeps its width at the next block;
- a lost race (a simulation finds the position taken or made healthy, or our liquidation is
  mined behind another liquidator's) means a competitor: the window drops to
  KEEPER_CONTESTED_CONCURRENCY (1) and stays there until KEEPER_CONTESTED_FOR_S pass without
  another lost race.

The estimate on the latest block happens before a liquidation enters the window (it needs no
protection), so the window holds only the pending-block call, the profitability check, signing
and the broadcast. Waiters are let in first-in first-out (rank order).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from types import TracebackType


class SendWindow:
    def __init__(
        self,
        maximum: int,
        contested: int = 1,
        contested_for_s: float = 120.0,
        clock: Callable[[], float] = time.monotonic,
    ):
        if maximum < 1 or contested < 1:
            raise ValueError("window sizes must be >= 1")
        self.maximum = maximum
        self.contested_max = min(contested, maximum)
        self.contested_for_s = contested_for_s
        self.clock = clock
        self.limit = 1
        self._credit = 0  # clean simulations since the window last widened
        self.active = 0
        self.lost_races = 0
        self._contested_until = float("-inf")
        self._waiters: deque[asyncio.Future[None]] = deque()

    @property
    def contested(self) -> bool:
        return self.clock() < self._contested_until

    @property
    def ceiling(self) -> int:
        return self.contested_max if self.contested else self.maximum

    def restart(self, backlog: int) -> None:
        """A new block's `backlog` liquidations: narrow again, to sqrt(backlog / 2) (a
        competitor may have appeared), unless a burst is still going through (it keeps its
        width: a competitor in it would have been seen)."""
        if self.active == 0 and not self._waiters:
            start = math.isqrt(max(0, backlog) // 8)
            self.limit, self._credit = max(1, min(self.ceiling, start)), 0

    def went_through(self) -> None:
        """A simulation came back clean: a window's worth of them widen it by one (up to the
        ceiling)."""
        self._credit += 1
        if self._credit >= self.limit:
            self._credit = 0
            self.limit = max(1, min(self.ceiling, self.limit + 1))
            self._wake()

    def lost_race(self) -> None:
        """Another liquidator was first: contested for KEEPER_CONTESTED_FOR_S."""
        self.lost_races += 1
        self._contested_until = self.clock() + self.contested_for_s
        self.limit, self._credit = min(self.limit, self.contested_max), 0

    async def acquire(self) -> None:
        if self.active < self.limit and not self._waiters:
            self.active += 1
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append(future)
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # it was let in just as it was cancelled: pass the place on
            else:
                self._discard(future)
            raise

    def release(self) -> None:
        self.active -= 1
        self._wake()

    def _discard(self, future: asyncio.Future[None]) -> None:
        try:
            self._waiters.remove(future)
        except ValueError:
            pass
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.active < self.limit:
            future = self._waiters.popleft()
            if not future.done():
                self.active += 1
                future.set_result(None)

    async def __aenter__(self) -> SendWindow:
        await self.acquire()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.release()
