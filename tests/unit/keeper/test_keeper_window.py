"""The send window (window.py): at each block sqrt(backlog / 8) unless a burst is going
through, one wider per window's worth of clean simulations, one place while contested,
first-in first-out, and a cancelled waiter never leaks a place."""

from __future__ import annotations

import asyncio

import pytest

from services.keeper.window import SendWindow


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_each_block_starts_it_at_the_square_root_of_an_eighth_of_the_backlog() -> None:
    w = SendWindow(32)
    assert w.limit == 1  # before any block
    for backlog, width in ((0, 1), (15, 1), (32, 2), (73, 3), (500, 7), (5000, 25), (9000, 32)):
        w.restart(backlog)
        assert w.limit == width, backlog


def test_it_widens_by_one_per_window_of_clean_simulations_up_to_the_maximum() -> None:
    w = SendWindow(5)
    w.restart(72)
    assert w.limit == 3
    seen = []
    for _ in range(12):
        w.went_through()
        seen.append(w.limit)
    # 3 clean at 3 -> 4; 4 at 4 -> 5; capped
    assert seen == [3, 3, 4, 4, 4, 4, 5, 5, 5, 5, 5, 5]


async def test_a_burst_going_through_keeps_its_width_at_the_next_block() -> None:
    w = SendWindow(8)
    w.restart(200)
    assert w.limit == 5
    await w.acquire()
    w.restart(2)  # a new block while one is in the window
    assert w.limit == 5
    w.release()
    w.restart(2)
    assert w.limit == 1


def test_a_lost_race_narrows_it_until_the_contested_time_has_passed() -> None:
    clock = Clock()
    w = SendWindow(8, contested=2, contested_for_s=60, clock=clock)
    w.restart(800)
    assert w.limit == 8 and not w.contested
    w.lost_race()
    assert w.limit == 2 and w.contested and w.lost_races == 1
    for _ in range(10):
        w.went_through()
    assert w.limit == 2  # the contested ceiling
    w.restart(800)
    assert w.limit == 2
    clock.now += 61
    assert not w.contested
    w.went_through()
    w.went_through()
    assert w.limit == 3


def test_sizes_must_be_positive() -> None:
    with pytest.raises(ValueError):
        SendWindow(0)
    with pytest.raises(ValueError):
        SendWindow(4, contested=0)


async def test_waiters_enter_first_in_first_out_as_places_free() -> None:
    w = SendWindow(4)
    order: list[int] = []
    release = asyncio.Event()

    async def job(i: int) -> None:
        async with w:
            order.append(i)
            await release.wait()

    tasks = [asyncio.create_task(job(i)) for i in range(5)]
    await asyncio.sleep(0.01)
    assert order == [0] and w.active == 1  # the window starts at 1
    w.went_through()  # -> 2: the next waiter enters
    await asyncio.sleep(0.01)
    assert order == [0, 1] and w.active == 2
    release.set()
    await asyncio.gather(*tasks)
    assert order == [0, 1, 2, 3, 4] and w.active == 0


async def test_a_cancelled_waiter_leaves_no_place_taken() -> None:
    w = SendWindow(2)
    await w.acquire()
    waiting = asyncio.create_task(w.acquire())
    behind = asyncio.create_task(w.acquire())
    await asyncio.sleep(0.01)
    waiting.cancel()
    with pytest.raises(asyncio.CancelledError):
        await waiting
    w.release()
    await asyncio.wait_for(behind, 1)  # the place went to the one behind
    assert w.active == 1
    w.release()
    assert w.active == 0


async def test_a_waiter_let_in_as_it_is_cancelled_passes_its_place_on() -> None:
    w = SendWindow(2)
    await w.acquire()
    waiting = asyncio.create_task(w.acquire())
    behind = asyncio.create_task(w.acquire())
    await asyncio.sleep(0.01)
    w.release()  # lets `waiting` in (its future is done) ...
    waiting.cancel()  # ... but it is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await waiting
    await asyncio.wait_for(behind, 1)
    assert w.active == 1
