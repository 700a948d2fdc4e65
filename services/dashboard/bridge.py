"""The dashboard's view of the cross-chain collateral bridge (docs/bridge.md): transfers from the
indexer's `bridge_transfers` view (migration 0006), above all deposits in flight (locked on the
remote chain, not credited on the home chain yet).

GET /api/bridge/transfers?status=in_flight|delivered|deferred|all&direction=deposit|withdrawal|all
    &account=0x..&limit=&offset=  -> a listing, newest first, plus totals of what is in flight.
Bridge events do not come through Kafka: the page polls this endpoint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.dashboard.formatting import _plain, iso_time, wad_to_str
from services.dashboard.params import (
    Page,
    ParamError,
    parse_choice,
    parse_page,
    single_values,
)

STATUSES = ("in_flight", "delivered", "deferred", "all")
DIRECTIONS = ("deposit", "withdrawal", "all")
COLUMNS = """guid, direction, src_chain_id, dst_chain_id, nonce, sender, account, amount,
       sent_block, sent_timestamp, sent_tx, delivered_block, delivered_timestamp, delivered_tx,
       status"""


@dataclass(frozen=True)
class TransferFilter:
    status: str
    direction: str
    account: str | None
    page: Page


def parse_transfer_filter(items: list[tuple[str, str]]) -> TransferFilter:
    values = single_values(items, ("status", "direction", "account", "limit", "offset"))
    account = values.get("account")
    if account is not None:
        account = account.lower()
        if len(account) != 42 or not account.startswith("0x"):
            raise ParamError("account", "must be a 0x-prefixed 20-byte address")
        try:
            int(account, 16)
        except ValueError:
            raise ParamError("account", "must be a 0x-prefixed 20-byte address") from None
    return TransferFilter(
        status=parse_choice("status", values.get("status"), STATUSES, "all"),
        direction=parse_choice("direction", values.get("direction"), DIRECTIONS, "all"),
        account=account,
        page=parse_page(values, 20, 200),
    )


def transfers_sql(f: TransferFilter) -> tuple[str, str, list[Any]]:
    """(page query, count query, args); the page query's last two args are limit and offset."""
    clauses: list[str] = []
    args: list[Any] = []
    if f.status != "all":
        args.append(f.status)
        clauses.append(f"status = ${len(args)}")
    if f.direction != "all":
        args.append(f.direction)
        clauses.append(f"direction = ${len(args)}")
    if f.account is not None:
        args.append(f.account)
        clauses.append(f"(account = ${len(args)} OR sender = ${len(args)})")
    where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
    n = len(args)
    page = (
        f"SELECT {COLUMNS} FROM bridge_transfers {where} "
        f"ORDER BY sent_timestamp DESC, src_chain_id, nonce DESC LIMIT ${n + 1} OFFSET ${n + 2}"
    )
    count = f"SELECT count(*) FROM bridge_transfers {where}"
    return page, count, [*args, f.page.limit, f.page.offset]


IN_FLIGHT_SQL = """
SELECT direction, count(*) AS n, COALESCE(sum(amount), 0) AS amount, min(sent_timestamp) AS oldest
FROM bridge_transfers WHERE status = 'in_flight' GROUP BY direction
"""


def format_transfer(record: Any, now: float | None = None) -> dict[str, Any]:
    out = {key: _plain(record[key]) for key in record.keys()}
    out["amount"] = wad_to_str(record["amount"])
    out["wad"] = {"amount": None if record["amount"] is None else str(int(record["amount"]))}
    out["sent_at"] = iso_time(record["sent_timestamp"])
    out["delivered_at"] = iso_time(record["delivered_timestamp"])
    if record["status"] == "in_flight":
        # chain time of the send against wall time: approximate on local chains moved by tests
        out["age_s"] = max(0, int((now or time.time()) - int(record["sent_timestamp"])))
    return out


async def bridge_transfers(pool: asyncpg.Pool, f: TransferFilter) -> dict[str, Any]:
    page_sql, count_sql, args = transfers_sql(f)
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(page_sql, *args)
        total = int(await conn.fetchval(count_sql, *args[:-2]))
        flight = await conn.fetch(IN_FLIGHT_SQL)
        synced = await conn.fetch(
            "SELECT chain_id, last_block, updated_at FROM bridge_sync ORDER BY chain_id"
        )
    end = f.page.offset + len(rows)
    in_flight = {d: {"count": 0, "amount": "0", "oldest_sent_at": None} for d in DIRECTIONS[:2]}
    for r in flight:
        in_flight[r["direction"]] = {
            "count": int(r["n"]),
            "amount": wad_to_str(r["amount"]),
            "oldest_sent_at": iso_time(r["oldest"]),
        }
    return {
        "items": [format_transfer(r) for r in rows],
        "total": total,
        "limit": f.page.limit,
        "offset": f.page.offset,
        "next_offset": end if end < total else None,
        "in_flight": in_flight,
        "chains": [
            {
                "chain_id": int(r["chain_id"]),
                "last_block": int(r["last_block"]),
                "updated_at": _plain(r["updated_at"]),
            }
            for r in synced
        ],
    }
