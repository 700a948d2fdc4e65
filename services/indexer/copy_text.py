"""PostgreSQL COPY text format for the chunk's bulk tables. Pure.

Each row becomes one line of tab-separated fields (`\\N` for NULL, `t`/`f` for booleans,
integers in decimal), which the server parses on its own core. Built with one format operation
per row, this costs a fraction of asyncpg's per-value binary encoding (its Python-int ->
numeric path above all). Values are almost always hex strings, numbers and identifiers, which
need no escaping: a row is checked for the characters COPY treats specially (backslash, tab,
newline, carriage return) and only then built field by field with escapes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from services.indexer.decode import DecodedLog
from shared.readmodel.tables import PositionRow

NULL = "\\N"
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


def field(value: Any) -> str:
    """One value as a COPY text field."""
    if value is None:
        return NULL
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, int):
        return str(value)
    return str(value).translate(_ESCAPES)


def line(values: Sequence[Any]) -> str:
    """One row, field by field (the general path, and the reference for the fast ones)."""
    return "\t".join(field(v) for v in values) + "\n"


def _clean(text: str, rows: int, fields: int, nulls: int) -> bool:
    """Fast-built rows are right as they are when the text holds exactly their separators, the
    backslashes of their `nulls` NULL markers and nothing else that COPY would read as an
    escape or a row end (checked once per table, not per row)."""
    return (
        text.count("\t") == rows * (fields - 1)
        and text.count("\n") == rows
        and text.count("\\") == nulls
        and "\r" not in text
    )


EVENT_FIELDS = 12


def event_line(
    chain_id: int, e: DecodedLog, funding_index_at: Mapping[tuple[int, int], int]
) -> str:
    """A row of `events` (columns as tables.EVENT_COLUMNS), unchecked: `events_copy` checks."""
    fidx = funding_index_at.get((e.block_number, e.log_index))
    return (
        f"{chain_id}\t{e.tx_hash}\t{e.log_index}\t{e.block_number}\t{e.block_hash}\t"
        f"{e.block_timestamp}\t{e.contract}\t{e.name}\t"
        f"{NULL if e.token_id is None else e.token_id}\t"
        f"{NULL if e.market_id is None else e.market_id}\t{e.args_text()}\t"
        f"{NULL if fidx is None else fidx}\n"
    )


def event_values(
    chain_id: int, e: DecodedLog, funding_index_at: Mapping[tuple[int, int], int]
) -> tuple[Any, ...]:
    return (
        chain_id,
        e.tx_hash,
        e.log_index,
        e.block_number,
        e.block_hash,
        e.block_timestamp,
        e.contract,
        e.name,
        e.token_id,
        e.market_id,
        e.args_text(),
        funding_index_at.get((e.block_number, e.log_index)),
    )


def events_copy(
    chain_id: int,
    events: Sequence[DecodedLog],
    funding_index_at: Mapping[tuple[int, int], int],
    lines: Sequence[str] | None = None,
) -> bytes:
    """The `events` rows as COPY text. `lines`: the rows already built with `event_line`."""
    if lines is None:
        lines = [event_line(chain_id, e, funding_index_at) for e in events]
    text = "".join(lines)
    # (funding_index_at holds entries of these events only, as the fold makes it; were it
    # otherwise, the count would be off and the row-by-row path would run: slower, still right)
    nulls = (
        sum(1 for e in events if e.token_id is None)
        + sum(1 for e in events if e.market_id is None)
        + len(events)
        - len(funding_index_at)
    )
    if not _clean(text, len(events), EVENT_FIELDS, nulls):
        text = "".join(line(event_values(chain_id, e, funding_index_at)) for e in events)
    return text.encode()


POSITION_FIELDS = 25


def _n(value: Any) -> Any:
    return NULL if value is None else value


def position_line(r: PositionRow) -> str:
    """A row of `positions` (columns as tables.POSITION_COLUMNS), unchecked."""
    return (
        f"{r.token_id}\t{r.market_id}\t{_n(r.market)}\t{r.owner}\t{'t' if r.is_long else 'f'}\t"
        f"{r.collateral}\t{r.leverage}\t{r.size}\t{r.notional}\t{r.entry_price}\t"
        f"{r.entry_funding_index}\t{r.open_fee}\t{r.status}\t{r.opened_block}\t"
        f"{r.opened_timestamp}\t{r.opened_tx}\t{_n(r.closed_block)}\t{_n(r.closed_timestamp)}\t"
        f"{_n(r.closed_tx)}\t{_n(r.exit_price)}\t{_n(r.realized_pnl)}\t"
        f"{_n(r.funding_payment)}\t{_n(r.payout)}\t{r.updated_block}\t{_n(r.close_fee)}\n"
    )


def positions_copy(rows: Iterable[PositionRow]) -> bytes:
    """The `positions` rows as COPY text."""
    rows = list(rows)
    text = "".join(position_line(r) for r in rows)
    nulls = 0
    for r in rows:  # the nullable columns
        nulls += (
            (r.market is None)
            + (r.closed_block is None)
            + (r.closed_timestamp is None)
            + (r.closed_tx is None)
            + (r.exit_price is None)
            + (r.realized_pnl is None)
            + (r.funding_payment is None)
            + (r.payout is None)
            + (r.close_fee is None)
        )
    if not _clean(text, len(rows), POSITION_FIELDS, nulls):
        text = "".join(line(r.record()) for r in rows)
    return text.encode()
