"""Two keeper replicas in one consumer group split the positions by partition and liquidate
each underwater position exactly once, with no transaction wasted on a lost race."""

from __future__ import annotations

import uuid
from pathlib import Path

from aiokafka import AIOKafkaProducer
from deploy_support import Deployed
from keeper_support import (
    BTC,
    ETH,
    KEEPER_KEY,
    address_of,
    crash,
    indexer_settings,
    keeper_settings,
    liquidations,
    open_positions,
    running_indexer,
    running_keeper,
    txs_from,
    wait_indexed,
    wait_ready,
    wait_until,
)
from web3 import Web3

from perpex_dev.devstack.market import LocalMarket
from shared.events.keys import partition_for, token_key

SECOND_KEEPER_KEY = 9


async def test_two_replicas_liquidate_each_position_exactly_once(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    market = LocalMarket(chain, deployment)
    spec = [(ETH, True, 15 + i % 5) for i in range(14)] + [(ETH, True, 2), (BTC, True, 2)]
    book = open_positions(market, spec)
    underwater = book.tokens(lambda _p, _l, lev: lev >= 15)
    partitions = {partition_for(token_key(t), range(3)) for t in underwater}
    assert len(partitions) >= 2  # both replicas will have work
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    group = f"g-{uuid.uuid4().hex[:8]}"
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        s1 = keeper_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, group)
        s2 = keeper_settings(
            rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, group, SECOND_KEEPER_KEY
        )
        async with running_keeper(s1) as k1:
            await wait_ready(k1)
            assert set(k1.book.positions) == set(book.positions)
            async with running_keeper(s2) as k2:

                def split() -> bool:
                    c1, c2 = k1.consumer, k2.consumer
                    assert c1 is not None and c2 is not None
                    o1, o2 = c1.ownership.owned, c2.ownership.owned
                    return bool(o1 and o2 and not (o1 & o2) and (o1 | o2) == {0, 1, 2})

                await wait_until(split, within=60)
                await wait_ready(k2)
                owned1, owned2 = set(k1.book.positions), set(k2.book.positions)
                assert not (owned1 & owned2) and owned1 | owned2 == set(book.positions)

                # a malformed message is logged, counted and skipped
                producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
                await producer.start()
                try:
                    for p in range(3):
                        await producer.send_and_wait(topic, b"{not json", partition=p)
                finally:
                    await producer.stop()
                await wait_until(
                    lambda: k1.consumer.stats["malformed"] + k2.consumer.stats["malformed"] == 3,  # type: ignore[union-attr]
                    within=15,
                )

                start = chain.eth.block_number
                crash(market, ETH, -0.08)
                await wait_until(
                    lambda: underwater <= set(k1.liquidated) | set(k2.liquidated), within=45
                )
                done1, done2 = set(k1.liquidated), set(k2.liquidated)
    assert not (done1 & done2)
    assert done1 and done2  # the work was split
    assert done1 <= owned1 and done2 <= owned2
    events = liquidations(chain, deployment, start)
    assert sorted(e["tokenId"] for e in events) == sorted(underwater)  # each exactly once
    for key_index, done in ((KEEPER_KEY, done1), (SECOND_KEEPER_KEY, done2)):
        sent = txs_from(chain, address_of(key_index), start)
        assert len(sent) == len(done) and all(t["status"] == 1 for t in sent)
