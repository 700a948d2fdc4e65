"""Helpers for the dashboard integration tests: seeded indexer rows (and the values they imply),
the running app, Kafka envelopes and a producer."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg
import httpx

from shared.chain.deployment import market_id_hex
from shared.events.schema import EventEnvelope, encode_event
from shared.kafka import make_producer

INDEXER_MIGRATIONS = Path(__file__).resolve().parents[3] / "services/indexer/migrations"
WAD = 10**18
T0 = 1_763_000_000  # 2025-11-13, base of the seeded block timestamps
ETH = market_id_hex("ETH/USDT")
BTC = market_id_hex("BTC/USDT")
SOL = market_id_hex("SOL/USDT")  # positions only: no markets row, pair from positions.market
ALICE = "0x" + "a1" * 20
BOB = "0x" + "b0" * 20
KEEPER = "0x" + "ee" * 20
PM = "0x" + "5f" * 20


def wad(x: float | int | str) -> int:
    from decimal import Decimal

    return int(Decimal(str(x)) * WAD)


@dataclass(frozen=True)
class Pos:
    token_id: int
    market_id: str
    pair: str
    owner: str
    is_long: bool
    collateral: str
    leverage: str
    price: str
    status: str = "open"
    opened: int = 0  # block
    exit_price: str | None = None
    pnl: str | None = None


POSITIONS = [
    Pos(1, ETH, "ETH/USDT", ALICE, True, "1000", "5", "2000", opened=10),
    Pos(2, ETH, "ETH/USDT", BOB, False, "500", "10", "2010", opened=11),
    Pos(3, ETH, "ETH/USDT", ALICE, True, "2000", "3", "1990", "closed", 12, "2050", "180.9"),
    Pos(4, BTC, "BTC/USDT", BOB, True, "800", "20", "40000", "liquidated", 13, "38100", "-760"),
    Pos(5, BTC, "BTC/USDT", ALICE, False, "1500", "4", "40200", opened=14),
    Pos(6, ETH, "ETH/USDT", BOB, True, "300", "8", "2030", "liquidated", 15, "1790", "-283.7"),
    Pos(7, SOL, "SOL/USDT", ALICE, True, "250", "2", "150", opened=16),
    Pos(8, ETH, "ETH/USDT", ALICE, False, "1200", "2.5", "2045", opened=17),
]


def _pos_row(p: Pos) -> tuple[Any, ...]:
    notional = wad(p.collateral) * wad(p.leverage) // WAD
    size = notional * WAD // wad(p.price)
    closed = p.status != "open"
    return (
        p.token_id,
        p.market_id,
        p.pair if p.market_id != SOL else "SOL/USDT",
        p.owner,
        p.is_long,
        wad(p.collateral),
        wad(p.leverage),
        size,
        notional,
        wad(p.price),
        0,
        notional // 1000,
        p.status,
        p.opened,
        T0 + p.opened * 600,
        f"0x{p.token_id:064x}",
        p.opened + 20 if closed else None,
        T0 + (p.opened + 20) * 600 if closed else None,
        f"0x{p.token_id + 100:064x}" if closed else None,
        wad(p.exit_price) if p.exit_price else None,
        wad(p.pnl) if p.pnl else None,
        p.opened + 20 if closed else p.opened,
    )


async def seed(conn: asyncpg.Connection) -> None:
    """Rows as the indexer would have written them (the expected values are in the tests)."""
    await conn.executemany(
        "INSERT INTO markets (market_id, pair, funding_rate, cumulative_funding_index,"
        " last_funding_time, paused) VALUES ($1, $2, 0, 0, NULL, false)",
        [(ETH, "ETH/USDT"), (BTC, "BTC/USDT")],
    )
    await conn.executemany(
        """INSERT INTO positions (token_id, market_id, market, owner, is_long, collateral,
               leverage, size, notional, entry_price, entry_funding_index, open_fee, status,
               opened_block, opened_timestamp, opened_tx, closed_block, closed_timestamp,
               closed_tx, exit_price, realized_pnl, updated_block)
           VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,$11,$12,$13,$14,$15,$16,$17,$18,$19,$20,$21,$22)""",
        [_pos_row(p) for p in POSITIONS],
    )
    await conn.executemany(
        """INSERT INTO liquidations (token_id, market_id, owner, liquidator, tx_hash, log_index,
               block_number, block_timestamp, price, realized_pnl, reward, owner_refund, bad_debt)
           VALUES ($1,$2,$3,$4,$5,1,$6,$7,$8,$9,$10,$11,$12)""",
        [
            (4, BTC, BOB, KEEPER, f"0x{104:064x}", 33, T0 + 33 * 600, wad("38100"),
             wad("-760"), wad("8"), wad("32"), 0),
            (6, ETH, BOB, KEEPER, f"0x{106:064x}", 35, T0 + 35 * 600, wad("1790"),
             wad("-283.7"), wad("3"), wad("13.3"), 0),
        ],
    )  # fmt: skip
    funding = []
    for i in range(24):
        rate = round(math.sin(i / 3.0) * 1.2e14 + 2e13)  # WAD per interval, +-0.012 %
        for market, scale in ((ETH, 1), (BTC, -1)):
            funding.append(
                (market, scale * rate, scale * rate * (i + 1), wad("2000"), wad("2000"),
                 T0 + i * 3600, f"0x{1000 + i:064x}", 0 if market == ETH else 1, 40 + i,
                 T0 + i * 3600)
            )  # fmt: skip
    await conn.executemany(
        """INSERT INTO funding_updates (market_id, funding_rate, cumulative_funding_index,
               mark_twap, index_twap, funding_timestamp, tx_hash, log_index, block_number,
               block_timestamp) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10)""",
        funding,
    )
    await conn.execute(
        """INSERT INTO events (chain_id, tx_hash, log_index, block_number, block_hash,
               block_timestamp, contract, name, token_id, market_id, args)
           VALUES (31337, $1, 0, 12, '0xbh', $2, $3, 'PositionOpened', 3, $4, $5::jsonb),
                  (31337, $6, 0, 32, '0xbh2', $7, $3, 'PositionClosed', 3, $4, $8::jsonb)""",
        f"0x{3:064x}",
        T0 + 12 * 600,
        PM,
        ETH,
        '{"tokenId": "3", "size": "3000000000000000000", "isLong": true}',
        f"0x{103:064x}",
        T0 + 32 * 600,
        '{"tokenId": "3", "exitPrice": "2050000000000000000000", "realizedPnl": "-5"}',
    )
    await conn.execute(
        "INSERT INTO sync_status (contract_address, last_synced_block, last_synced_hash)"
        " VALUES ($1, 63, '0xhead')",
        PM,
    )


@dataclass
class Running:
    url: str
    app: Any

    @property
    def ws_url(self) -> str:
        return self.url.replace("http://", "ws://") + "/ws"


StartDashboard = Callable[..., Awaitable[Running]]


async def wait_feed_live(url: str, within: float = 15.0) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=5) as client:
        deadline = asyncio.get_running_loop().time() + within
        while True:
            status = (await client.get("/api/status")).json()
            if status["feed"] and status["feed"]["live"]:
                return
            assert asyncio.get_running_loop().time() < deadline, f"feed not live: {status}"
            await asyncio.sleep(0.1)


def envelope(name: str, token_id: int | None, args: dict[str, Any], **over: Any) -> EventEnvelope:
    tx = over.pop("tx_hash", f"0x{abs(hash((name, token_id))) % 10**20:064x}")
    data: dict[str, Any] = {
        "event_id": f"31337:{tx}:0",
        "name": name,
        "chain_id": 31337,
        "contract": PM,
        "block_number": 70,
        "block_hash": "0x" + "bb" * 32,
        "block_timestamp": T0 + 70 * 600,
        "tx_hash": tx,
        "log_index": 0,
        "market_id": ETH,
        "market": "ETH/USDT",
        "token_id": token_id,
        "args": args,
    }
    data.update(over)
    return EventEnvelope.model_validate(data)


async def publish(bootstrap: str, topic: str, *messages: EventEnvelope | bytes) -> None:
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        for m in messages:
            if isinstance(m, EventEnvelope):
                await producer.send_and_wait(topic, encode_event(m), key=m.key)
            else:
                await producer.send_and_wait(topic, m, key=b"junk")
    finally:
        await producer.stop()
