"""The outbox's rows as values (pure): what a chunk's transaction inserts, what the drainer
reads back, and how a read is cut to a message budget.

A forward chunk's rows are by reference: they name a range of `events` rows (first and last
block/log index) and the drainer sends the messages handed over in memory at commit, or
rebuilds them from `events`. Rows written by a rollback (the reverted events, whose `events`
rows are gone) and rows a rollback cut into carry their values inline."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from services.indexer.decode import DecodedLog

Message = tuple[str, bytes, bytes]  # (event_id, Kafka key, Kafka value)

OUTBOX_COLUMNS = (
    "event_ids",
    "msg_keys",
    "msg_values",
    "headers",
    "reverted",
    "first_block",
    "last_block",
    "message_count",
)
# What a read needs to decide about a row without its values.
OUTBOX_REF_COLUMNS = (
    "id, message_count, headers, msg_values IS NOT NULL AS inline, first_block, "
    "first_log_index, last_block, last_log_index"
)


@dataclass(frozen=True)
class OutboxRow:
    """A committed outbox row with its messages, ready to send."""

    id: int
    messages: Sequence[Message]
    headers: list[tuple[str, bytes]]


@dataclass(frozen=True)
class OutboxRef:
    """An unsent outbox row as read, without its values."""

    id: int
    message_count: int
    carrier: dict[str, Any] | None  # the trace carrier the row was written with
    inline: bool  # values in the row; else rebuilt from `events` between the bounds below
    first_block: int
    first_log_index: int | None
    last_block: int
    last_log_index: int | None

    @classmethod
    def from_record(cls, r: Mapping[str, Any]) -> OutboxRef:
        return cls(
            id=r["id"],
            message_count=r["message_count"],
            carrier=json.loads(r["headers"]) if r["headers"] is not None else None,
            inline=r["inline"],
            first_block=r["first_block"],
            first_log_index=r["first_log_index"],
            last_block=r["last_block"],
            last_log_index=r["last_log_index"],
        )

    @property
    def headers(self) -> list[tuple[str, bytes]]:
        return carrier_headers(self.carrier)


class OutboxInconsistent(RuntimeError):
    """A by-reference outbox row does not match the events it points at."""


def within_budget(refs: Sequence[OutboxRef], messages: int) -> list[OutboxRef]:
    """The leading rows holding at most `messages` messages in all (always the first one)."""
    out: list[OutboxRef] = []
    total = 0
    for ref in refs:
        if out and total + ref.message_count > messages:
            break
        out.append(ref)
        total += ref.message_count
    return out


def outbox_records(
    messages: Sequence[Message],
    blocks: Sequence[int],
    headers: str | None,
    reverted: bool,
    batch: int,
) -> list[tuple[Any, ...]]:
    """Inline outbox rows (values carried in the row) of at most `batch` messages each."""
    records = []
    for i in range(0, len(messages), batch):
        part = messages[i : i + batch]
        part_blocks = blocks[i : i + batch]
        records.append(
            (
                [m[0] for m in part],
                [m[1] for m in part],
                [m[2] for m in part],
                headers,
                reverted,
                min(part_blocks),
                max(part_blocks),
                len(part),
            )
        )
    return records


def outbox_ranges(events: Sequence[DecodedLog], batch: int) -> list[tuple[int, int, int, int, int]]:
    """By-reference outbox rows for a chunk's events (in chain order): per `batch` events,
    (message count, first block, first log index, last block, last log index)."""
    out = []
    for i in range(0, len(events), batch):
        first, last = events[i], events[min(i + batch, len(events)) - 1]
        count = min(batch, len(events) - i)
        out.append((count, first.block_number, first.log_index, last.block_number, last.log_index))
    return out


def carrier_headers(carrier: Mapping[str, Any] | None) -> list[tuple[str, bytes]]:
    """Kafka headers from an outbox row's trace carrier (its `headers` column)."""
    if not carrier:
        return []
    return [(k, str(v).encode()) for k, v in sorted(carrier.items())]
