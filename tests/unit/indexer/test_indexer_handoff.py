"""The drainer's hand-over policy: memory within its budget, rows older than the process or
handed over are rebuilt, newer ones wait for their hand-over (a grace period at most)."""

from __future__ import annotations

from services.indexer.handoff import Handoff
from services.indexer.outbox_rows import OutboxRef, OutboxRow, within_budget


def _ref(row_id: int, count: int = 2, inline: bool = False) -> OutboxRef:
    return OutboxRef(row_id, count, None, inline, 1, 0, 1, count - 1)


def _row(row_id: int, count: int = 2) -> OutboxRow:
    return OutboxRow(row_id, [(f"e{row_id}:{i}", b"k", b"v") for i in range(count)], [])


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_rows_older_than_the_process_are_rebuilt_newer_ones_wait_for_their_hand_over() -> None:
    clock = Clock()
    handoff = Handoff(memory_messages=100, grace_s=10, clock=clock)
    handoff.start_from(2)
    refs = [_ref(1), _ref(2), _ref(3), _ref(4)]
    assert handoff.sendable(refs) == refs[:2] and handoff.held
    handoff.offer([_row(3)])
    assert handoff.sendable(refs) == refs[:3] and handoff.held
    assert 3 in handoff.memory and handoff.messages == 2
    handoff.offer([_row(4)])
    assert handoff.sendable(refs) == refs and not handoff.held


def test_an_inline_row_never_waits() -> None:
    handoff = Handoff(memory_messages=100)
    handoff.start_from(0)
    refs = [_ref(7, inline=True), _ref(8)]
    assert handoff.sendable(refs) == refs[:1] and handoff.held


def test_a_lost_hand_over_is_rebuilt_after_the_grace_period_only() -> None:
    clock = Clock()
    handoff = Handoff(memory_messages=100, grace_s=10, clock=clock)
    handoff.start_from(0)
    refs = [_ref(5), _ref(6)]
    assert handoff.sendable(refs) == []
    clock.now += 9
    assert handoff.sendable(refs) == []
    clock.now += 2  # one timer for all held rows, started at the first refusal: all go
    assert handoff.sendable(refs) == refs and handoff.rebuild_upto == 6
    handoff.offer([_row(9)])  # a hand-over arrives again: the timer restarts
    assert handoff.sendable([_ref(9), _ref(10)]) == [_ref(9)] and handoff.held
    clock.now += 5
    assert handoff.sendable([_ref(10)]) == []  # the timer started again at that refusal
    clock.now += 6
    assert handoff.sendable([_ref(10)]) == [_ref(10)]


def test_memory_keeps_rows_within_its_budget_and_lets_them_go() -> None:
    handoff = Handoff(memory_messages=5)
    handoff.offer([_row(1, 2), _row(2, 2), _row(3, 2)])
    assert sorted(handoff.memory) == [1, 2] and handoff.messages == 4
    assert handoff.rebuild_upto == 3  # handed over, kept or not: rebuilt when due
    handoff.forget([1, 3])
    assert sorted(handoff.memory) == [2] and handoff.messages == 2
    handoff.offer([_row(4, 3)])
    assert handoff.messages == 5


def test_a_read_is_cut_to_the_message_budget_but_takes_one_row_at_least() -> None:
    refs = [_ref(1, 3), _ref(2, 3), _ref(3, 3)]
    assert within_budget(refs, 6) == refs[:2]
    assert within_budget(refs, 5) == refs[:1]
    assert within_budget(refs, 1) == refs[:1]
    assert within_budget([], 10) == []
