"""`syncStatus`: the indexer's sync_status rows, and the chain head when the dashboard may ask
the node for it (DASHBOARD_RPC_HEAD; the dashboard otherwise never talks to the chain)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

import httpx

from services.dashboard.formatting import format_sync
from shared.config import redact_url
from shared.readmodel.queries import SYNC_STATUS_SQL

log = logging.getLogger("perpex.dashboard.graphql")


class ChainHead:
    """eth_blockNumber from RPC_URL, cached for `ttl` seconds; None while the node fails."""

    def __init__(self, rpc_url: str, ttl: float = 2.0, timeout: float = 2.0):
        self.rpc_url = rpc_url
        self.ttl = ttl
        self._client = httpx.AsyncClient(timeout=timeout)
        self._value: int | None = None
        self._at = -1e9
        self._lock = asyncio.Lock()
        self.last_error: str | None = None

    async def get(self) -> int | None:
        async with self._lock:
            if time.monotonic() - self._at < self.ttl:
                return self._value
            try:
                resp = await self._client.post(
                    self.rpc_url,
                    json={"jsonrpc": "2.0", "id": 1, "method": "eth_blockNumber", "params": []},
                )
                resp.raise_for_status()
                self._value = int(resp.json()["result"], 16)
                self.last_error = None
            except (httpx.HTTPError, ValueError, KeyError, TypeError) as exc:
                if self.last_error is None:
                    log.warning(
                        "chain head from %s unavailable: %s",
                        redact_url(self.rpc_url),
                        type(exc).__name__,
                    )
                self.last_error = type(exc).__name__
                self._value = None
            self._at = time.monotonic()
            return self._value

    async def close(self) -> None:
        await self._client.aclose()


def summarize(rows: list[Any], head: int | None) -> dict[str, Any]:
    """sync_status rows + head -> the SyncStatus object (pure)."""
    contracts = [format_sync(r) for r in rows]
    indexed = min((c["last_synced_block"] for c in contracts), default=None)
    ages = [c["seconds_since_update"] for c in contracts if c["seconds_since_update"] is not None]
    return {
        "indexed_block": indexed,
        "head": head,
        "lag_blocks": None if head is None or indexed is None else max(0, head - indexed),
        "seconds_since_update": max(ages) if ages else None,
        "contracts": contracts,
    }


async def sync_status(snapshot: Any, head: ChainHead | None) -> Any:
    rows = await snapshot.fetch(SYNC_STATUS_SQL)
    return summarize(rows, await head.get() if head is not None else None)
