"""Pure pieces of the GraphQL API: the read-only role's SQL and checks, subscription filters,
sync status, scalars."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from graphql import GraphQLError

from services.dashboard.graphql.database import (
    GraphQLDatabaseError,
    check_privileges,
    ensure_role_sql,
)
from services.dashboard.graphql.scalars import _parse_big_int
from services.dashboard.graphql.subscription import event_matches
from services.dashboard.graphql.sync import summarize


def _row(table: str, can_read: bool = True, writes: list[str] | None = None, su: bool = False):  # type: ignore[no-untyped-def]
    return {"table_name": table, "can_read": can_read, "writes": writes or [], "superuser": su,
            "role": "r"}  # fmt: skip


def test_role_sql_is_idempotent_and_refuses_odd_names() -> None:
    sql = ensure_role_sql("perpex_graphql")
    assert "IF NOT EXISTS" in sql[0] and "NOLOGIN" in sql[0]
    assert any(s.startswith("GRANT SELECT ON markets, positions") for s in sql)
    assert not any("INSERT" in s or "ALL" in s for s in sql)
    for bad in ("Perpex", "x; DROP TABLE positions", "1role", "a" * 64, ""):
        with pytest.raises(ValueError):
            ensure_role_sql(bad)


def test_privilege_check() -> None:
    check_privileges([_row("positions"), _row("markets")])
    with pytest.raises(GraphQLDatabaseError, match="superuser"):
        check_privileges([_row("positions", su=True)])
    with pytest.raises(GraphQLDatabaseError, match="cannot read markets"):
        check_privileges([_row("positions"), _row("markets", can_read=False)])
    with pytest.raises(GraphQLDatabaseError, match=r"can write positions \(INSERT, DELETE\)"):
        check_privileges([_row("positions", writes=["INSERT", "DELETE"])])


def test_subscription_filters() -> None:
    e = {"name": "PositionOpened", "market_id": "0xAB", "token_id": 7}
    assert event_matches(e, None, None, None)
    assert event_matches(e, frozenset({"PositionOpened"}), "0xab", 7)
    assert not event_matches(e, frozenset({"PositionClosed"}), None, None)
    assert not event_matches(e, None, "0xcd", None)
    assert not event_matches(e, None, None, 8)
    assert not event_matches({**e, "market_id": None}, None, "0xab", None)


def test_sync_summary() -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    rows = [
        {"contract_address": "0xa", "last_synced_block": 90, "last_synced_hash": "0x1",
         "updated_at": at, "seconds_since_update": 2.0},
        {"contract_address": "0xb", "last_synced_block": 88, "last_synced_hash": None,
         "updated_at": at, "seconds_since_update": 5.0},
    ]  # fmt: skip
    s = summarize(rows, 100)
    assert (s["indexed_block"], s["head"], s["lag_blocks"], s["seconds_since_update"]) == (
        88,
        100,
        12,
        5.0,
    )
    assert s["contracts"][0]["updated_at"] == "2026-01-01T00:00:00+00:00"
    empty = summarize([], None)
    assert empty["indexed_block"] is None and empty["lag_blocks"] is None
    assert summarize(rows, 80)["lag_blocks"] == 0


def test_big_int_input() -> None:
    assert _parse_big_int(5) == 5 and _parse_big_int(" 123 ") == 123
    assert _parse_big_int(str(2**200)) == 2**200
    for bad in (True, "1e5", "0x10", 1.5, 2**257):
        with pytest.raises(GraphQLError):
            _parse_big_int(bad)
