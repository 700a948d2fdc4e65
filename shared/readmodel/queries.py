"""SELECTs over the indexer's tables shared by their readers (the keeper's book bootstrap, the
dashboard's REST API and GraphQL, `perpex indexer status`), built from the columns in
tables.py. Every value a caller supplies is a bind parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from shared.readmodel.tables import (
    EVENTS,
    FUNDING_COLUMNS,
    FUNDING_UPDATES,
    LIQUIDATION_COLUMNS,
    LIQUIDATIONS,
    MARKETS,
    OPEN,
    POSITION_COLUMNS,
    POSITIONS,
    SYNC_STATUS,
)


def _placed(table_columns: Sequence[str], column: str, after: str) -> tuple[str, ...]:
    """The columns with `column` (one of them, or an added one) right after `after`."""
    out = [c for c in table_columns if c != column]
    out.insert(out.index(after) + 1, column)
    return tuple(out)


def _joined_select(
    table: str, alias: str, selected: Sequence[str], expressions: Mapping[str, str]
) -> str:
    """SELECT of `selected` from `table` joined with its market (alias m), for WHERE, ORDER BY
    and LIMIT to follow."""
    items = ", ".join(expressions.get(c, f"{alias}.{c}") for c in selected)
    return (
        f"\nSELECT {items}\n"
        f"FROM {table} {alias} LEFT JOIN {MARKETS} m ON m.market_id = {alias}.market_id\n"
    )


# Rows as the dashboard shows them (their key order is the API's), each with the market's pair
# (`market`); a position lists its status right after who holds it and which way.
POSITION_SELECT = _joined_select(
    POSITIONS,
    "p",
    _placed(POSITION_COLUMNS, "status", after="is_long"),
    {"market": "COALESCE(p.market, m.pair) AS market"},
)
LIQUIDATION_SELECT = _joined_select(
    LIQUIDATIONS,
    "l",
    _placed(LIQUIDATION_COLUMNS, "market", after="market_id"),
    {"market": "m.pair AS market"},
)
FUNDING_SELECT = _joined_select(
    FUNDING_UPDATES,
    "f",
    _placed(FUNDING_COLUMNS, "market", after="market_id"),
    {"market": "m.pair AS market"},
)

# A position's events in chain order; and the same for many positions at once (GraphQL's
# batched `Position.events`).
_EVENT_ITEMS = "name, block_number, block_timestamp, tx_hash, log_index, args"
POSITION_EVENTS_SQL = f"""
SELECT {_EVENT_ITEMS}
FROM {EVENTS} WHERE token_id = $1 ORDER BY block_number, log_index
"""
POSITIONS_EVENTS_SQL = f"""
SELECT token_id, {_EVENT_ITEMS}
FROM {EVENTS} WHERE token_id = ANY($1::numeric[]) ORDER BY token_id, block_number, log_index
"""

# How far the indexer is, per followed contract.
SYNC_STATUS_SQL = f"""
SELECT contract_address, last_synced_block, last_synced_hash, updated_at,
       EXTRACT(EPOCH FROM (now() - updated_at))::float8 AS seconds_since_update
FROM {SYNC_STATUS} ORDER BY contract_address
"""
# The block every table reflects (the contracts move together; None: nothing indexed yet).
SYNCED_BLOCK_SQL = f"SELECT min(last_synced_block) FROM {SYNC_STATUS}"
MARKET_PAIRS_SQL = f"SELECT market_id, pair FROM {MARKETS}"


def open_positions_sql(selected: Sequence[str]) -> str:
    """The open positions' `selected` columns."""
    unknown = set(selected) - set(POSITION_COLUMNS)
    if unknown:
        raise ValueError(f"positions has no column {', '.join(sorted(unknown))}")
    return f"SELECT {', '.join(selected)} FROM {POSITIONS} WHERE status = '{OPEN}'"
