"""Partition ownership splits the positions between replicas; liquidation decisions."""

from __future__ import annotations

from services.keeper.decisions import (
    CheckTracker,
    LiquidationAction,
    OnchainHealth,
    decide,
)
from services.keeper.partitions import Ownership


def test_ownership_splits_tokens_between_replicas() -> None:
    a = Ownership(3, {0, 2})
    b = Ownership(3, {1})
    tokens = range(1, 500)
    assert all(a.owns_token(t) != b.owns_token(t) for t in tokens)
    assert any(a.owns_token(t) for t in tokens) and any(b.owns_token(t) for t in tokens)
    assert not Ownership().owns_token(1)  # nothing assigned yet
    c = a.with_partitions(3, {0, 1, 2})
    assert all(c.owns_token(t) for t in tokens)


def _h(exists: bool = True, liq: bool = False, price: int = 1) -> OnchainHealth:
    return OnchainHealth(1, exists, liq, 0, 0, price)


def test_decide() -> None:
    assert decide(_h(exists=False), in_flight=True) is LiquidationAction.DROP
    assert decide(_h(liq=True), in_flight=True) is LiquidationAction.IN_FLIGHT
    assert decide(_h(liq=True), in_flight=False) is LiquidationAction.LIQUIDATE
    assert decide(_h(liq=False), in_flight=False) is LiquidationAction.HEALTHY
    assert decide(_h(liq=False, price=0), in_flight=False) is LiquidationAction.ORACLE_DOWN


def test_check_tracker() -> None:
    t = CheckTracker()
    stamp = (100, 1, 0)
    assert t.needs_check(1, stamp, in_flight=False)
    assert not t.needs_check(1, stamp, in_flight=True)
    t.record(1, stamp, LiquidationAction.HEALTHY)
    assert not t.needs_check(1, stamp, in_flight=False)  # nothing changed
    assert t.needs_check(1, (99, 1, 0), in_flight=False)  # price moved
    t.record(1, stamp, LiquidationAction.LIQUIDATE)
    assert t.needs_check(1, stamp, in_flight=False)  # liquidatable but nothing in flight
    t.record(1, stamp, LiquidationAction.HEALTHY)
    t.invalidate(1)
    assert t.needs_check(1, stamp, in_flight=False)
