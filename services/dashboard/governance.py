"""The dashboard's view of governance (docs/governance.md): proposals from the indexer's
`governance_proposals` view and parameter changes from `parameter_changes` (migration 0007).

GET /api/governance?status=pending|executed|all&limit=&offset=
    -> {"proposals": [...], "changes": [...], "chain_time": ...}
`pending` is every proposal not executed or canceled (voting, vote ended, queued, executable).
A proposal's `phase` compares its vote window and timelock eta with the chain's time, taken as
the newest indexed block's timestamp (or the wall clock, whichever is later).
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

import asyncpg

from services.dashboard.formatting import _plain, iso_time, wad_to_percent, wad_to_str
from services.dashboard.params import Page, parse_choice, parse_page, single_values

STATUSES = ("pending", "executed", "all")
_WHERE = {
    "pending": "WHERE status IN ('proposed', 'queued')",
    "executed": "WHERE status = 'executed'",
    "all": "",
}
# how each parameter's value reads (the rest are plain WAD amounts)
RATIOS = frozenset(
    {
        "maintenanceMarginRatio",
        "liquidationFeeRatio",
        "liquidationRewardShare",
        "maxSpread",
        "maxFundingRate",
    }
)
SECONDS = frozenset({"fundingInterval", "delay", "executableAt"})
CHANGES_SHOWN = 20


@dataclass(frozen=True)
class GovernanceFilter:
    status: str
    page: Page


def parse_governance_filter(items: list[tuple[str, str]]) -> GovernanceFilter:
    values = single_values(items, ("status", "limit", "offset"))
    return GovernanceFilter(
        status=parse_choice("status", values.get("status"), STATUSES, "all"),
        page=parse_page(values, 20, 200),
    )


def phase(status: str, vote_start: int, vote_end: int, eta: int | None, now: int) -> str:
    """Where a proposal stands at chain time `now` (pure)."""
    if status in ("executed", "canceled"):
        return status
    if status == "queued":
        return "executable" if eta is not None and now >= eta else "queued"
    if now < vote_start:
        return "voting starts"
    if now <= vote_end:
        return "voting"
    return "vote ended"


def format_proposal(r: Any, now: int) -> dict[str, Any]:
    eta = None if r["eta"] is None else int(r["eta"])
    p = phase(r["status"], int(r["vote_start"]), int(r["vote_end"]), eta, now)
    seconds_left = None
    if p == "voting starts":
        seconds_left = int(r["vote_start"]) - now
    elif p == "voting":
        seconds_left = int(r["vote_end"]) - now
    elif p == "queued" and eta is not None:
        seconds_left = eta - now
    return {
        "proposal_id": str(int(r["proposal_id"])),
        "description": r["description"],
        "proposer": r["proposer"],
        "status": r["status"],
        "phase": p,
        "seconds_left": seconds_left,
        "vote_start": iso_time(r["vote_start"]),
        "vote_end": iso_time(r["vote_end"]),
        "eta": iso_time(eta),
        "votes": {
            "for": wad_to_str(r["votes_for"]),
            "against": wad_to_str(r["votes_against"]),
            "abstain": wad_to_str(r["votes_abstain"]),
        },
        "created_block": int(r["created_block"]),
        "created_tx": r["created_tx"],
        "executed_block": _plain(r["executed_block"]),
        "executed_tx": r["executed_tx"],
        "targets": _plain(r["targets"]),
    }


def readable_values(args: dict[str, Any]) -> dict[str, str]:
    """A change's new values as people read them: ratios in percent, durations in seconds."""
    out: dict[str, str] = {}
    for key, value in args.items():
        if key in ("marketId", "changeId"):
            continue
        if key in RATIOS:
            out[key] = f"{wad_to_percent(value)}%"
        elif key in SECONDS or isinstance(value, bool) or str(value).startswith("0x"):
            out[key] = str(value)
        else:
            out[key] = wad_to_str(value) or str(value)
    return out


def format_change(r: Any) -> dict[str, Any]:
    args = r["args"] if isinstance(r["args"], dict) else _json(r["args"])
    return {
        "block_number": int(r["block_number"]),
        "log_index": int(r["log_index"]),
        "at": iso_time(r["block_timestamp"]),
        "tx_hash": r["tx_hash"],
        "name": r["name"],
        "kind": r["kind"],
        "market": r["market"],
        "market_id": r["market_id"],
        "values": readable_values(args),
        "args": args,
    }


def _json(text: str) -> dict[str, Any]:
    value = json.loads(text)
    return value if isinstance(value, dict) else {}


async def governance_view(pool: asyncpg.Pool, f: GovernanceFilter) -> dict[str, Any]:
    where = _WHERE[f.status]
    async with pool.acquire() as conn, conn.transaction(isolation="repeatable_read", readonly=True):
        rows = await conn.fetch(
            f"SELECT * FROM governance_proposals {where} "
            "ORDER BY created_block DESC, proposal_id DESC LIMIT $1 OFFSET $2",
            f.page.limit,
            f.page.offset,
        )
        total = int(await conn.fetchval(f"SELECT count(*) FROM governance_proposals {where}"))
        changes = await conn.fetch(
            "SELECT * FROM parameter_changes ORDER BY block_number DESC, log_index DESC LIMIT $1",
            CHANGES_SHOWN,
        )
        newest = await conn.fetchval(
            "SELECT block_timestamp FROM events ORDER BY block_number DESC, log_index DESC LIMIT 1"
        )
    now = max(int(time.time()), int(newest or 0))
    end = f.page.offset + len(rows)
    return {
        "proposals": [format_proposal(r, now) for r in rows],
        "total": total,
        "limit": f.page.limit,
        "offset": f.page.offset,
        "next_offset": end if end < total else None,
        "changes": [format_change(r) for r in changes],
        "chain_time": iso_time(now),
    }
