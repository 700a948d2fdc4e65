"""The outbox points at `events` instead of carrying the Kafka values: what the drainer rebuilds
from the database (after a restart, or past its memory budget) must be the bytes the indexer
handed over in memory, and a rollback must not orphan the unsent rows it cuts into."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from deploy_support import Deployed
from indexer_support import consume, db_rows, ids_of, settings_for
from web3 import Web3

from perpex_dev.loadgen import LoadGen
from services.indexer.app import open_app
from services.indexer.handoff import Handoff
from services.indexer.outbox_rows import OutboxRow
from services.indexer.store import MIGRATIONS_DIR
from shared.db import apply_migrations


async def test_rebuilt_messages_equal_the_handed_over_ones_and_rollback_inlines(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    gen = LoadGen(rpc_url, deployment, seed=23, batch_size=25)
    gen.fund_traders()
    gen.scenario(60)
    gen.close()
    topic = "perpex.events.rebuild." + dep_file.stem
    # small outbox rows and chunks, so that a rollback cuts through several of them
    settings = settings_for(
        rpc_url,
        fresh_db,
        kafka_bootstrap,
        topic,
        dep_file,
        outbox_batch=37,
        chunk_size=4,
        max_chunk_size=8,
    )
    async with open_app(settings) as app:
        handed: list[OutboxRow] = []
        app.indexer.outbox_sink = handed.extend  # no drainer: everything stays unsent
        await app.indexer.run(asyncio.Event(), until_caught_up=True)
        assert len(handed) > 5
        sent_in_memory = [m for r in handed for m in r.messages]
        assert len(sent_in_memory) == app.indexer.stats.events

        outbox = app.store.outbox
        rebuilt = await outbox.unsent_rows(10**6, app.indexer.pairs)
        assert [r.id for r in rebuilt] == [r.id for r in handed]
        assert outbox.rebuilt_rows == len(handed)
        assert [m for r in rebuilt for m in r.messages] == sent_in_memory  # byte for byte
        assert [r.headers for r in rebuilt] == [r.headers for r in handed]

        # The drainer's memory may be empty when it reads the outbox, and the hand-over arrive
        # while the query runs: the rows are then taken from memory, not rebuilt.
        drainer = app.drainer
        drainer.handoff.start_from(0)  # nothing before this process: every row awaits its offer
        unsent = outbox.snapshot

        @contextlib.asynccontextmanager
        async def hand_over_meanwhile() -> AsyncIterator[Any]:
            async with unsent() as snap:
                drainer.offer(handed)
                yield snap

        outbox.snapshot = hand_over_meanwhile  # type: ignore[method-assign]
        outbox.rebuilt_rows = 0
        drainer.per_round = 10**6
        taken = await drainer._next_rows()
        outbox.snapshot = unsent  # type: ignore[method-assign]
        assert outbox.rebuilt_rows == 0
        assert all(t is h for t, h in zip(taken, handed, strict=True))
        drainer.handoff.forget(r.id for r in handed)

        # Not handed over, not older than this process: held (for OFFER_GRACE_S), not rebuilt.
        fresh = Handoff(memory_messages=10**6, grace_s=60)
        fresh.start_from(handed[0].id - 1)
        async with outbox.snapshot() as snap:
            refs = await snap.unsent(10**6)
        assert fresh.sendable(refs) == [] and fresh.held
        fresh.start_from(handed[-1].id)  # older than the process after all
        assert fresh.sendable(refs) == refs and not fresh.held

        # roll back the last third of the blocks: the unsent rows that point there become
        # inline rows (their events rows are gone), the rest still point at `events`
        blocks = sorted(
            {r["block_number"] for r in await db_rows(fresh_db, "SELECT block_number FROM events")}
        )
        cut = blocks[2 * len(blocks) // 3]
        removed = await db_rows(
            fresh_db, "SELECT count(*) AS n FROM events WHERE block_number >= $1", cut
        )
        result = await app.store.reorg.rollback(
            cut, None, app.indexer.pairs, app.targets.markets.values(), None
        )
        assert result.removed == removed[0]["n"] > 0
        kinds = await db_rows(
            fresh_db,
            "SELECT id, msg_values IS NOT NULL AS inline, reverted, last_block FROM outbox "
            "ORDER BY id",
        )
        forward = [k for k in kinds if not k["reverted"]]
        assert all(k["inline"] == (k["last_block"] >= cut) for k in forward)
        assert any(k["inline"] for k in forward) and not all(k["inline"] for k in forward)
        assert all(k["inline"] for k in kinds if k["reverted"])

        after = await outbox.unsent_rows(10**6, app.indexer.pairs)
        messages = [m for r in after for m in r.messages]
        assert messages[: len(sent_in_memory)] == sent_in_memory
        reverted_ids = [m[0] for m in messages[len(sent_in_memory) :]]
        assert len(reverted_ids) == result.removed

        # and the drainer sends all of it: originals, then their reverts. Its process did not
        # hand the rows over (as after a restart), so it rebuilds them from `events`.
        drainer.handoff.start_from(max(r.id for r in after))
        outbox.rebuilt_rows = 0
        stop = asyncio.Event()
        drain = asyncio.create_task(app.drainer.run(stop))
        try:
            await app.wait_drained(asyncio.Event())
        finally:
            stop.set()
            await drain
        msgs = await consume(
            kafka_bootstrap, topic, lambda m: len(m) >= len(sent_in_memory) + result.removed
        )
        assert ids_of(msgs) == {m[0] for m in sent_in_memory}
        assert ids_of(msgs, reverted=True) == set(reverted_ids)
        assert outbox.rebuilt_rows == sum(1 for k in forward if not k["inline"])


async def test_an_inline_row_from_the_previous_version_gets_its_count(fresh_db: str) -> None:
    """During a rolling upgrade the old writer inserts rows without message_count."""
    conn = await asyncpg.connect(fresh_db)
    try:
        await apply_migrations(conn, MIGRATIONS_DIR)
        await conn.execute(
            "INSERT INTO outbox (event_ids, msg_keys, msg_values, reverted, first_block, last_block)"
            " VALUES ($1, $2, $3, false, 1, 1)",
            ["1:0xaa:0", "1:0xaa:1"],
            [b"k", b"k"],
            [b"{}", b"{}"],
        )
        assert await conn.fetchval("SELECT message_count FROM outbox") == 2
    finally:
        await conn.close()


async def test_memory_lets_go_of_rows_whose_mark_sent_reply_was_lost(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    """The UPDATE marking rows sent commits but its reply is lost: the rows are sent, the
    database says so, and the drainer's memory must not keep them (or their budget) forever."""
    deployment, dep_file = deployed
    gen = LoadGen(rpc_url, deployment, seed=29, batch_size=10)
    gen.fund_traders()
    gen.scenario(12)
    gen.close()
    topic = "perpex.events.lostreply." + dep_file.stem
    settings = settings_for(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, outbox_batch=20)
    async with open_app(settings) as app:
        await app.indexer.run(asyncio.Event(), until_caught_up=True)  # hands rows over
        assert app.drainer.handoff.messages == app.indexer.stats.events > 0
        mark_sent = app.store.outbox.mark_sent

        async def reply_lost(ids: Sequence[int]) -> None:
            await mark_sent(ids)
            raise ConnectionResetError("connection lost before the reply")

        app.store.outbox.mark_sent = reply_lost  # type: ignore[method-assign]
        app.drainer.per_round = 10**6
        try:
            with pytest.raises(ConnectionResetError):
                await app.drainer.drain_once()
        finally:
            await app.drainer.close()
        assert await app.store.outbox.pending_messages() == 0
        assert app.drainer.handoff.memory == {} and app.drainer.handoff.messages == 0
