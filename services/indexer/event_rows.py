"""`events` rows back into decoded events and Kafka messages: what a reorg rollback reverts and
what the outbox drainer rebuilds are encoded by the indexer's own encoder, so the bytes are the
ones it would have sent in the first place."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import asyncpg

from services.indexer.decode import DecodedLog, trace_json
from services.indexer.event_specs import EventSpec
from services.indexer.outbox_rows import Message, OutboxInconsistent, OutboxRef
from shared.events.schema import EventEnvelope
from shared.readmodel.tables import EVENT_COLUMNS

EVENT_SELECT = f"SELECT {', '.join(EVENT_COLUMNS)} FROM events"


def _num(value: Any) -> int | None:
    return None if value is None else int(value)


class EventRows:
    """Decodes `events` rows of one chain with the ABI specs the indexer decodes logs with."""

    def __init__(self, chain_id: int, specs_by_name: Mapping[str, EventSpec]):
        self.chain_id = chain_id
        self.specs_by_name = dict(specs_by_name)

    def decoded(self, r: Mapping[str, Any]) -> DecodedLog:
        args: dict[str, Any] = json.loads(r["args"]) if isinstance(r["args"], str) else r["args"]
        spec = self.specs_by_name.get(r["name"])
        if spec is not None:
            types = dict((*spec.indexed, *spec.data))
            for k, v in list(args.items()):
                t = types.get(k, "")
                if (t.startswith("uint") or t.startswith("int")) and isinstance(v, str):
                    args[k] = int(v)
            if set(args) == set(spec.order):  # jsonb keeps its own key order: back to the ABI's
                args = {n: args[n] for n in spec.order}
        return DecodedLog(
            name=r["name"],
            contract=r["contract"],
            block_number=r["block_number"],
            block_hash=r["block_hash"],
            block_timestamp=r["block_timestamp"],
            tx_hash=r["tx_hash"],
            log_index=r["log_index"],
            args=args,
            token_id=_num(r["token_id"]),
            market_id=r["market_id"],
        )

    def envelope(
        self,
        r: Mapping[str, Any],
        pairs: Mapping[str, str],
        trace: dict[str, str] | None,
        reverted: bool,
    ) -> EventEnvelope:
        ev = self.decoded(r)
        market = pairs.get(ev.market_id) if ev.market_id else None
        return ev.envelope(self.chain_id, market, trace or None, reverted=reverted)

    async def messages_of(
        self, conn: asyncpg.Connection, ref: OutboxRef, pairs: Mapping[str, str]
    ) -> list[Message]:
        """The messages of a by-reference outbox row, from the events rows it names."""
        rows = await conn.fetch(
            f"{EVENT_SELECT} WHERE chain_id = $1 "
            "AND (block_number, log_index) >= ($2, $3) AND (block_number, log_index) <= ($4, $5) "
            "ORDER BY block_number, log_index",
            self.chain_id,
            ref.first_block,
            ref.first_log_index,
            ref.last_block,
            ref.last_log_index,
        )
        if len(rows) != ref.message_count:
            raise OutboxInconsistent(
                f"outbox row {ref.id} names {ref.message_count} events in blocks "
                f"{ref.first_block}-{ref.last_block}, the events table has {len(rows)}"
            )
        trace = trace_json(ref.carrier) if ref.carrier is not None else None
        chain_id = self.chain_id
        out = []
        for r in rows:
            ev = self.decoded(r)
            pair = pairs.get(ev.market_id) if ev.market_id else None
            out.append((ev.event_id(chain_id), ev.key(chain_id), ev.encode(chain_id, pair, trace)))
        return out


async def market_pairs(conn: asyncpg.Connection, known: Mapping[str, str]) -> dict[str, str]:
    """market id -> pair: the configured ones, completed from the markets table."""
    pairs = dict(known)
    for r in await conn.fetch("SELECT market_id, pair FROM markets WHERE pair IS NOT NULL"):
        pairs.setdefault(r["market_id"], r["pair"])
    return pairs
