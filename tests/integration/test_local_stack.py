"""A real round trip through each local component."""

from __future__ import annotations

import asyncio

import asyncpg
from web3 import Web3

from shared.kafka import make_consumer, make_producer


def test_anvil_transaction_mined_and_read_back(chain: Web3) -> None:
    sender, receiver = chain.eth.accounts[0], chain.eth.accounts[1]
    before = chain.eth.get_balance(receiver)
    tx_hash = chain.eth.send_transaction({"from": sender, "to": receiver, "value": 12345})
    receipt = chain.eth.wait_for_transaction_receipt(tx_hash, timeout=30)
    assert receipt["status"] == 1
    tx = chain.eth.get_transaction(tx_hash)
    assert tx["value"] == 12345 and tx["to"] == receiver
    assert chain.eth.get_balance(receiver) == before + 12345
    assert chain.eth.chain_id == 31337


async def test_postgres_row_written_and_read_back(fresh_db: str) -> None:
    conn = await asyncpg.connect(fresh_db)
    try:
        await conn.execute("CREATE TABLE t (id int PRIMARY KEY, name text NOT NULL)")
        await conn.execute("INSERT INTO t VALUES ($1, $2)", 7, "ETH/USDT")
    finally:
        await conn.close()
    conn = await asyncpg.connect(fresh_db)  # a new connection sees the committed row
    try:
        assert await conn.fetchrow("SELECT id, name FROM t") == (7, "ETH/USDT")
    finally:
        await conn.close()


async def test_kafka_consumer_group_resumes_from_committed_offset(
    kafka_bootstrap: str, topic: str
) -> None:
    producer = make_producer(kafka_bootstrap)
    await producer.start()
    try:
        for i in range(10):
            await producer.send_and_wait(topic, f"m{i}".encode(), key=b"same-key")
    finally:
        await producer.stop()

    group = f"g-{topic}"
    # The local broker (Tansu) numbers a group's first generation 0, for which aiokafka sends no
    # LeaveGroup on stop: the second member's join waits until the first one's session times
    # out, and every join waits half a session. A 2 s session (the services use 6 s) keeps that
    # wait short; what is tested, resuming from the committed offset, is the same.
    quick = {"session_timeout_ms": 2_000, "rebalance_timeout_ms": 1_000}
    first = make_consumer(kafka_bootstrap, [topic], group, **quick)
    await first.start()
    seen: list[str] = []
    try:
        while len(seen) < 4:
            batch = await first.getmany(timeout_ms=1000, max_records=4 - len(seen))
            for records in batch.values():
                seen += [r.value.decode() for r in records]
        await first.commit()
    finally:
        await first.stop()
    assert seen == ["m0", "m1", "m2", "m3"]

    second = make_consumer(kafka_bootstrap, [topic], group, **quick)
    await second.start()
    rest: list[str] = []
    try:

        async def drain() -> None:
            while len(rest) < 6:
                batch = await second.getmany(timeout_ms=1000)
                for records in batch.values():
                    rest.extend(r.value.decode() for r in records)

        await asyncio.wait_for(drain(), 30)
    finally:
        await second.stop()
    assert rest == [f"m{i}" for i in range(4, 10)]
