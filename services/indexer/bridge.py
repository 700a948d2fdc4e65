"""The indexer's bridge mode: follows the cross-chain collateral bridge's events (docs/bridge.md)
on its two chains into PostgreSQL (`bridge_events`, and the `bridge_transfers` view over it:
migration 0006), so the dashboard can show deposits in flight.

It runs inside `perpex indexer` when the deployment file has a `bridge` section and
REMOTE_RPC_URL is set, next to the main sync loop, under the same writer lock. It is deliberately
small and separate from that loop, which is built and tuned for one chain's PositionManager: the
bridge emits a handful of events per transfer, so it reads them in plain spans per chain, decodes
them with eth_abi and writes each span with its cursor in one transaction (idempotent: a span
read twice inserts nothing new). It reads no deeper than CONFIRMATIONS from the head; a reorg
under its cursor (the stored block hash is no longer the chain's) rewinds the chain's rows by
REORG_WINDOW blocks and reads them again. Bridge events are not published to Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg
from eth_abi import decode as abi_decode
from eth_utils import keccak

from services.indexer.rpc import JsonRpc, RpcError, logs_filter
from shared.backoff import backoff_delay
from shared.chain.abi import load_abi
from shared.chain.deployment import BridgeDeployment

log = logging.getLogger("perpex.indexer.bridge")

# the events each end's contract emits that the bridge mode keeps
BRIDGE_EVENTS = {
    "CollateralBridge": (
        "DepositCredited",
        "WithdrawalSent",
        "ReserveFunded",
        "ReserveWithdrawn",
        "RemoteSet",
    ),
    "CollateralDepositor": ("DepositSent", "Released", "ReleaseDeferred", "DeferredClaimed"),
}


@dataclass(frozen=True)
class EventDecoder:
    name: str
    indexed: tuple[tuple[str, str], ...]  # (name, type)
    data: tuple[tuple[str, str], ...]

    @classmethod
    def from_abi(cls, entry: dict[str, Any]) -> EventDecoder:
        inputs = entry["inputs"]
        return cls(
            entry["name"],
            tuple((i["name"], i["type"]) for i in inputs if i["indexed"]),
            tuple((i["name"], i["type"]) for i in inputs if not i["indexed"]),
        )

    @property
    def topic(self) -> str:
        types = ",".join(t for _, t in (*self.indexed, *self.data))
        return "0x" + keccak(text=f"{self.name}({types})").hex()

    def decode(self, log_: dict[str, Any]) -> dict[str, Any]:
        topics = log_["topics"][1:]
        if len(topics) != len(self.indexed):
            raise ValueError(f"{self.name}: {len(topics)} indexed topics")
        args: dict[str, Any] = {}
        for (name, typ), topic in zip(self.indexed, topics, strict=True):
            args[name] = abi_decode([typ], bytes.fromhex(topic[2:]))[0]
        values = abi_decode([t for _, t in self.data], bytes.fromhex(log_["data"][2:]))
        args.update({name: v for (name, _), v in zip(self.data, values, strict=True)})
        return {k: _jsonable(v) for k, v in args.items()}


def _jsonable(value: Any) -> Any:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    if isinstance(value, bool):
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str) and value.startswith("0x") and len(value) == 42:
        return value.lower()
    return value


def decoders(contract: str) -> dict[str, EventDecoder]:
    """topic0 -> decoder for the bridge events of `contract` (from the build output)."""
    out = {}
    for entry in load_abi(contract):
        if entry.get("type") == "event" and entry["name"] in BRIDGE_EVENTS[contract]:
            d = EventDecoder.from_abi(entry)
            out[d.topic] = d
    return out


@dataclass
class FollowedChain:
    role: str  # "home" / "remote"
    chain_id: int
    contract: str  # lower-case address
    start_block: int
    rpc: JsonRpc
    decoders: dict[str, EventDecoder]
    head: int = 0
    synced_to: int | None = None
    caught_up: bool = False
    errors: int = 0
    last_error: str | None = None


@dataclass
class BridgeFollower:
    pool: asyncpg.Pool
    chains: list[FollowedChain]
    confirmations: int = 0
    poll_s: float = 1.0
    span: int = 2000
    reorg_window: int = 128
    heartbeat: float = field(default_factory=time.monotonic)

    async def run(self, stop: asyncio.Event, until_caught_up: bool = False) -> None:
        await asyncio.gather(*(self._loop(c, stop, until_caught_up) for c in self.chains))

    async def _loop(self, chain: FollowedChain, stop: asyncio.Event, until_caught_up: bool) -> None:
        delay = self.poll_s
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                progressed = await self.step(chain)
                chain.errors, chain.last_error, delay = 0, None, self.poll_s
            except (RpcError, OSError, asyncpg.PostgresError, ValueError) as exc:
                chain.errors += 1
                chain.last_error = f"{type(exc).__name__}: {exc}"
                delay = backoff_delay(chain.errors + 1, self.poll_s, 30.0)
                log.warning(
                    "bridge %s chain %d: %s (retrying in %.1fs)",
                    chain.role,
                    chain.chain_id,
                    chain.last_error,
                    delay,
                )
                progressed = False
            if until_caught_up and chain.caught_up:
                return
            if not progressed:
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    async def step(self, chain: FollowedChain) -> bool:
        """Read the next span of `chain`; True when something was written."""
        async with self.pool.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT contract, last_block, last_hash FROM bridge_sync WHERE chain_id = $1",
                chain.chain_id,
            )
        if row is not None and row["contract"] != chain.contract:
            raise ValueError(
                f"this database follows bridge contract {row['contract']} on chain "
                f"{chain.chain_id}, not {chain.contract}: use a fresh database"
            )
        last = int(row["last_block"]) if row else chain.start_block - 1
        last_hash = row["last_hash"] if row else None
        if last_hash is not None:
            header = (await chain.rpc.headers([last])).get(last)
            if header is None or header.hash.lower() != last_hash.lower():
                await self._rewind(chain, last)
                return True
        chain.head = await chain.rpc.block_number() - self.confirmations
        chain.synced_to = last
        to = min(chain.head, last + self.span)
        if to <= last:
            chain.caught_up = True
            return False
        # the span's last header before its logs: a reorg racing the read shows up as a hash
        # mismatch on the next round
        end = (await chain.rpc.headers([to]))[to]
        if end is None:
            return False
        logs = await chain.rpc.call(
            "eth_getLogs", [logs_filter([chain.contract], list(chain.decoders), last + 1, to)]
        )
        rows = []
        blocks = sorted({int(entry["blockNumber"], 16) for entry in logs})
        headers = await chain.rpc.headers(blocks)
        for entry in logs:
            decoder = chain.decoders.get(entry["topics"][0]) if entry["topics"] else None
            if decoder is None or entry.get("removed"):
                continue
            number = int(entry["blockNumber"], 16)
            header = headers.get(number)
            if header is None or header.hash.lower() != entry["blockHash"].lower():
                return False  # the chain moved under the read: read the span again
            args = decoder.decode(entry)
            rows.append(
                (
                    chain.chain_id,
                    number,
                    int(entry["logIndex"], 16),
                    entry["blockHash"],
                    header.timestamp,
                    entry["transactionHash"].lower(),
                    chain.contract,
                    decoder.name,
                    args.get("guid"),
                    json.dumps(args),
                )
            )
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.executemany(
                """INSERT INTO bridge_events (chain_id, block_number, log_index, block_hash,
                       block_timestamp, tx_hash, contract, name, guid, args)
                   VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb)
                   ON CONFLICT DO NOTHING""",
                rows,
            )
            await conn.execute(
                """INSERT INTO bridge_sync (chain_id, contract, last_block, last_hash)
                   VALUES ($1, $2, $3, $4)
                   ON CONFLICT (chain_id) DO UPDATE SET last_block = $3, last_hash = $4,
                       updated_at = now()""",
                chain.chain_id,
                chain.contract,
                to,
                end.hash,
            )
        chain.synced_to = to
        chain.caught_up = to >= chain.head
        if rows:
            log.info(
                "bridge %s chain %d: %d event(s) in blocks %d-%d",
                chain.role,
                chain.chain_id,
                len(rows),
                last + 1,
                to,
            )
        return True

    async def _rewind(self, chain: FollowedChain, last: int) -> None:
        back = max(chain.start_block - 1, last - self.reorg_window)
        header = (await chain.rpc.headers([back])).get(back) if back >= 0 else None
        async with self.pool.acquire() as conn, conn.transaction():
            deleted = await conn.execute(
                "DELETE FROM bridge_events WHERE chain_id = $1 AND block_number > $2",
                chain.chain_id,
                back,
            )
            await conn.execute(
                """UPDATE bridge_sync SET last_block = $2, last_hash = $3, updated_at = now()
                   WHERE chain_id = $1""",
                chain.chain_id,
                back,
                header.hash if header else None,
            )
        log.warning(
            "bridge %s chain %d: reorg under block %d; rewound to %d (%s)",
            chain.role,
            chain.chain_id,
            last,
            back,
            deleted,
        )

    def status(self) -> dict[str, Any]:
        return {
            c.role: {
                "chain_id": c.chain_id,
                "synced_to": c.synced_to,
                "head": c.head,
                "last_error": c.last_error,
            }
            for c in self.chains
        }

    async def close(self) -> None:
        for c in self.chains:
            with contextlib.suppress(Exception):
                await c.rpc.close()


def make_follower(
    pool: asyncpg.Pool,
    bridge: BridgeDeployment,
    home_rpc: JsonRpc,
    remote_rpc: JsonRpc,
    *,
    confirmations: int,
    poll_s: float,
    reorg_window: int,
) -> BridgeFollower:
    chains = [
        FollowedChain(
            "home",
            bridge.home.chain_id,
            bridge.home.app.lower(),
            bridge.home.start_block,
            home_rpc,
            decoders("CollateralBridge"),
        ),
        FollowedChain(
            "remote",
            bridge.remote.chain_id,
            bridge.remote.app.lower(),
            bridge.remote.start_block,
            remote_rpc,
            decoders("CollateralDepositor"),
        ),
    ]
    return BridgeFollower(pool, chains, confirmations, poll_s, reorg_window=reorg_window)
