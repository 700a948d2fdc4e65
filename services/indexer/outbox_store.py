"""The outbox's reads and bookkeeping in PostgreSQL. What to send and from where (memory or the
database) is the drainer's decision (services/indexer/outbox.py); this module reads what it is
asked for, in one snapshot so that a concurrent rollback cannot tear a row."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence

import asyncpg

from services.indexer.event_rows import EventRows, market_pairs
from services.indexer.outbox_rows import (
    OUTBOX_REF_COLUMNS,
    Message,
    OutboxRef,
    OutboxRow,
    within_budget,
)

MAX_ROWS_PER_READ = 1000


class OutboxSnapshot:
    """Reads of unsent outbox rows within one REPEATABLE READ snapshot."""

    def __init__(self, conn: asyncpg.Connection, store: OutboxStore):
        self._conn = conn
        self._store = store

    async def unsent(self, messages: int) -> list[OutboxRef]:
        """The oldest unsent rows, in id order, about `messages` messages in all (at least
        one row)."""
        records = await self._conn.fetch(
            f"SELECT {OUTBOX_REF_COLUMNS} FROM outbox WHERE sent_at IS NULL ORDER BY id LIMIT $1",
            max(1, min(messages, MAX_ROWS_PER_READ)),  # a row holds at least one message
        )
        return within_budget([OutboxRef.from_record(r) for r in records], messages)

    async def messages(
        self, refs: Sequence[OutboxRef], pairs: Mapping[str, str]
    ) -> dict[int, list[Message]]:
        """The messages of `refs`: read from inline rows, rebuilt from `events` for the others."""
        out: dict[int, list[Message]] = {}
        inline_ids = [r.id for r in refs if r.inline]
        if inline_ids:
            for r in await self._conn.fetch(
                "SELECT id, event_ids, msg_keys, msg_values FROM outbox WHERE id = ANY($1)",
                inline_ids,
            ):
                out[r["id"]] = list(
                    zip(r["event_ids"], r["msg_keys"], r["msg_values"], strict=True)
                )
        by_reference = [r for r in refs if not r.inline]
        if by_reference:
            known = await market_pairs(self._conn, pairs)
            for ref in by_reference:
                out[ref.id] = await self._store.rows.messages_of(self._conn, ref, known)
                self._store.rebuilt_rows += 1
        return out


class OutboxStore:
    def __init__(self, pool: asyncpg.Pool, rows: EventRows):
        self.pool = pool
        self.rows = rows
        self.rebuilt_rows = 0  # by-reference rows rebuilt from `events`

    @contextlib.asynccontextmanager
    async def snapshot(self) -> AsyncIterator[OutboxSnapshot]:
        async with (
            self.pool.acquire() as conn,
            conn.transaction(isolation="repeatable_read", readonly=True),
        ):
            yield OutboxSnapshot(conn, self)

    async def unsent_rows(self, messages: int, pairs: Mapping[str, str]) -> list[OutboxRow]:
        """The oldest unsent rows with their messages, every one read from the database."""
        async with self.snapshot() as snap:
            refs = await snap.unsent(messages)
            read = await snap.messages(refs, pairs)
        return [OutboxRow(r.id, read[r.id], r.headers) for r in refs]

    async def inline_from(
        self, conn: asyncpg.Connection, block: int, pairs: Mapping[str, str]
    ) -> None:
        """Within the caller's transaction: unsent by-reference rows that reach `block` or later
        carry their values from now on (a rollback is about to delete those events rows)."""
        records = await conn.fetch(
            f"SELECT {OUTBOX_REF_COLUMNS} FROM outbox WHERE sent_at IS NULL AND msg_values IS NULL "
            "AND last_block >= $1 ORDER BY id",
            block,
        )
        for ref in map(OutboxRef.from_record, records):
            messages = await self.rows.messages_of(conn, ref, pairs)
            await conn.execute(
                "UPDATE outbox SET event_ids = $2, msg_keys = $3, msg_values = $4 WHERE id = $1",
                ref.id,
                [m[0] for m in messages],
                [m[1] for m in messages],
                [m[2] for m in messages],
            )

    async def mark_sent(self, ids: Sequence[int]) -> None:
        if not ids:
            return
        async with self.pool.acquire() as conn:
            await conn.execute(
                "UPDATE outbox SET sent_at = now() WHERE id = ANY($1::bigint[])", list(ids)
            )

    async def last_id(self) -> int:
        async with self.pool.acquire() as conn:
            value = await conn.fetchval("SELECT coalesce(max(id), 0) FROM outbox")
        return int(value)

    async def pending_messages(self) -> int:
        """Messages not yet acknowledged by the broker."""
        async with self.pool.acquire() as conn:
            value = await conn.fetchval(
                "SELECT coalesce(sum(message_count), 0) FROM outbox WHERE sent_at IS NULL"
            )
        return int(value)

    async def purge_sent(self, older_than_s: float) -> int:
        async with self.pool.acquire() as conn:
            status = await conn.execute(
                "DELETE FROM outbox WHERE sent_at IS NOT NULL "
                "AND sent_at < now() - make_interval(secs => $1)",
                older_than_s,
            )
        return int(status.split()[-1])
