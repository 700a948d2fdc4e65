"""`perpex indexer status`: where the indexer stands, read from its database and the node.

Prints the chain head (eth_blockNumber at RPC_URL), the indexed block, the lag, the outbox
backlog (messages not yet acknowledged by the broker, and how old the oldest is) and each
followed contract's sync_status, as a table or, with --json, one JSON object. It reads only
(DB_URI and RPC_URL; DEPLOYMENT_FILE, when set, names the contracts) and works while the
indexer runs.

Exit 0; 1 when PostgreSQL or the node cannot be reached (what can still be shown is shown, and
the error names which and why; never a password or an RPC URL's path); 2 on bad configuration.
"""

from __future__ import annotations

import asyncio
import json
import sys
from dataclasses import dataclass, field
from typing import Any

import asyncpg
import click
import httpx
from pydantic import Field

from shared.config import (
    BaseServiceSettings,
    exit_on_config_error,
    load_settings,
    redact_dsn,
    redact_url,
)
from shared.readmodel.queries import SYNC_STATUS_SQL

TIMEOUT_S = 5.0

OUTBOX_SQL = """
SELECT coalesce(sum(message_count), 0)::bigint AS messages, count(*) AS rows,
       EXTRACT(EPOCH FROM (now() - min(created_at)))::float8 AS oldest_age_s
FROM outbox WHERE sent_at IS NULL
"""


class StatusSettings(BaseServiceSettings):
    confirmations: int = Field(default=0, ge=0, le=10_000)


@dataclass
class Status:
    head: int | None = None
    contracts: list[dict[str, Any]] = field(default_factory=list)
    outbox: dict[str, Any] | None = None
    confirmations: int = 0
    errors: dict[str, str] = field(default_factory=dict)

    @property
    def indexed_block(self) -> int | None:
        return min((c["last_synced_block"] for c in self.contracts), default=None)

    @property
    def lag_blocks(self) -> int | None:
        indexed = self.indexed_block
        if self.head is None or indexed is None:
            return None
        return max(0, self.head - self.confirmations - indexed)

    def as_json(self) -> dict[str, Any]:
        return {
            "head": self.head,
            "indexed_block": self.indexed_block,
            "lag_blocks": self.lag_blocks,
            "confirmations": self.confirmations,
            "outbox": self.outbox,
            "contracts": self.contracts,
            "errors": self.errors,
        }


def contract_names(settings: BaseServiceSettings) -> dict[str, str]:
    """address (lower-case) -> contract name, from the addresses or the deployment file."""
    names: dict[str, str] = {}
    if settings.deployment_file is not None and settings.deployment_file.is_file():
        from shared.chain.deployment import Deployment

        try:
            deployment = Deployment.load(settings.deployment_file)
            c = deployment.contracts
            names = {
                c.position_manager.lower(): "PositionManager",
                c.position_nft.lower(): "PositionNFT",
            }
            if deployment.governance is not None:  # the indexer follows the Governor too
                names[deployment.governance.governor.lower()] = "PerpExGovernor"
        except Exception:  # a label only: an unreadable file just leaves the addresses bare
            names = {}
    if settings.position_manager_address:
        names[settings.position_manager_address.lower()] = "PositionManager"
    if settings.position_nft_address:
        names[settings.position_nft_address.lower()] = "PositionNFT"
    governor = getattr(settings, "governor_address", None)
    if governor:
        names[governor.lower()] = "PerpExGovernor"
    return names


async def read_database(dsn: str, status: Status, names: dict[str, str]) -> None:
    where = f"PostgreSQL at {redact_dsn(dsn)}"
    try:
        conn = await asyncpg.connect(dsn, timeout=TIMEOUT_S)
    except (OSError, TimeoutError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        status.errors["database"] = f"cannot reach {where}: {type(exc).__name__}: {exc}"
        return
    try:
        rows = await conn.fetch(SYNC_STATUS_SQL)
        outbox = await conn.fetchrow(OUTBOX_SQL)
    except asyncpg.UndefinedTableError:
        status.errors["database"] = (
            f"{where} has no indexer tables: has `perpex indexer` run against this DB_URI?"
        )
        return
    except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
        status.errors["database"] = f"reading {where} failed: {type(exc).__name__}: {exc}"
        return
    finally:
        await conn.close()
    status.contracts = [
        {
            "contract_address": r["contract_address"],
            "name": names.get(r["contract_address"].lower()),
            "last_synced_block": r["last_synced_block"],
            "last_synced_hash": r["last_synced_hash"],
            "updated_at": r["updated_at"].isoformat() if r["updated_at"] else None,
            "seconds_since_update": r["seconds_since_update"],
        }
        for r in rows
    ]
    assert outbox is not None
    status.outbox = {
        "messages": int(outbox["messages"]),
        "rows": int(outbox["rows"]),
        "oldest_age_s": outbox["oldest_age_s"],
    }


async def read_head(rpc_url: str, status: Status) -> None:
    where = f"the node at {redact_url(rpc_url)}"
    try:
        async with httpx.AsyncClient(timeout=TIMEOUT_S) as client:
            resp = await client.post(
                rpc_url,
                json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
            )
            resp.raise_for_status()
            status.head = int(resp.json()["result"], 16)
    except httpx.HTTPStatusError as exc:
        status.errors["rpc"] = f"{where} answered HTTP {exc.response.status_code}"
    except httpx.HTTPError as exc:
        status.errors["rpc"] = f"cannot reach {where}: {type(exc).__name__}"
    except (ValueError, KeyError, TypeError):
        status.errors["rpc"] = f"{where} gave no block number (is RPC_URL a JSON-RPC endpoint?)"


async def collect(settings: StatusSettings) -> Status:
    status = Status(confirmations=settings.confirmations)
    await asyncio.gather(
        read_database(settings.db_uri, status, contract_names(settings)),
        read_head(settings.rpc_url, status),
    )
    return status


def _n(value: int | None) -> str:
    return "unknown" if value is None else f"{value:,}"


def _age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    if seconds < 120:
        return f"{seconds:.1f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def render(status: Status) -> str:
    """The human table (pure)."""
    lag = status.lag_blocks
    lines = [
        f"head            {_n(status.head)}",
        f"indexed block   {_n(status.indexed_block)}",
        f"lag             {'unknown' if lag is None else f'{lag:,} blocks'}"
        + (f" (CONFIRMATIONS {status.confirmations})" if status.confirmations else ""),
    ]
    if status.outbox is not None:
        o = status.outbox
        oldest = "" if o["oldest_age_s"] is None else f", oldest {o['oldest_age_s']:.1f}s old"
        lines.append(f"outbox backlog  {o['messages']:,} messages in {o['rows']:,} rows{oldest}")
    if status.contracts:
        header = ("contract", "name", "last block", "block hash", "updated")
        table = [
            (
                c["contract_address"],
                c["name"] or "-",
                f"{c['last_synced_block']:,}",
                (c["last_synced_hash"] or "-")[:18],
                _age(c["seconds_since_update"]),
            )
            for c in status.contracts
        ]
        widths = [max(len(row[i]) for row in [header, *table]) for i in range(len(header))]
        lines.append("")
        for row in [header, *table]:
            lines.append("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)).rstrip())
    elif "database" not in status.errors:
        lines.append("no contract indexed yet (sync_status is empty)")
    return "\n".join(lines)


@click.command("status")
@click.option("--json", "as_json", is_flag=True, help="one JSON object instead of the table")
def status(as_json: bool) -> None:
    """Head, indexed block, lag, outbox backlog and per-contract sync status."""
    settings = exit_on_config_error(lambda: load_settings(StatusSettings, "perpex indexer status"))
    result = asyncio.run(collect(settings))
    if as_json:
        click.echo(json.dumps(result.as_json()))
    else:
        click.echo(render(result))
    for error in result.errors.values():
        click.echo(f"error: {error}", err=True)
    sys.exit(1 if result.errors else 0)
