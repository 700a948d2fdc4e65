"""The liquidation latency in blocks (services/keeper/metrics.py LiquidatableClock): from the
first health round that read a position liquidatable to the block its liquidation was mined."""

from __future__ import annotations

from dataclasses import dataclass

from services.keeper.metrics import LiquidatableClock


@dataclass
class Read:
    token_id: int
    liquidatable: bool
    exists: bool = True
    index_price: int = 2000


def test_latency_from_the_first_liquidatable_read_to_the_mined_block() -> None:
    recorded: list[int] = []
    clock = LiquidatableClock(recorded.append)
    clock.read(Read(1, False), 10, None)
    clock.read(Read(1, True), 11, None)
    clock.read(Read(1, True), 12, None)  # still liquidatable: the clock keeps block 11
    assert len(clock) == 1
    assert clock.mined(1, 14) == 3 and recorded == [3]
    assert len(clock) == 0
    assert clock.mined(1, 15) is None  # not tracked any more: nothing recorded twice
    assert recorded == [3]


def test_healthy_again_gone_unpriced_and_stale_reads() -> None:
    recorded: list[int] = []
    clock = LiquidatableClock(recorded.append)
    clock.read(Read(1, True), 20, None)
    clock.read(Read(1, False), 21, None)  # healthy again (price came back): forgotten
    assert len(clock) == 0
    clock.read(Read(2, True), 22, None)
    clock.read(Read(2, False, index_price=0), 23, None)  # no price: tells nothing
    assert len(clock) == 1
    clock.read(Read(2, True), 24, settled=30)  # read before our liquidation was mined
    clock.read(Read(2, False, exists=False), 25, None)  # gone (closed, liquidated by another)
    assert len(clock) == 0
    clock.read(Read(3, True), 26, None)
    clock.forget(3)  # dropped
    assert len(clock) == 0 and recorded == []
    clock.read(Read(4, True), 40, None)
    assert clock.mined(4, 40) == 0  # mined in the block it was read liquidatable in
