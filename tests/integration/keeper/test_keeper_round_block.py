"""A health round reads the chain at one block: a position the book holds from a later block
(its node lags the indexer's, say) is "not there yet" at that block, not gone."""

from __future__ import annotations

import uuid
from pathlib import Path

from deploy_support import Deployed
from keeper_support import (
    ETH,
    indexer_settings,
    keeper_settings,
    open_positions,
    running_indexer,
    running_keeper,
    wait_indexed,
    wait_ready,
)
from web3 import Web3

from perpex_dev.devstack.market import LocalMarket
from services.keeper.book import BookPosition


async def test_a_position_newer_than_the_rounds_block_is_kept(
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
    (token,) = open_positions(market, [(ETH, True, 2)]).tokens(lambda *_: True)
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        settings = keeper_settings(
            rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, f"g-{uuid.uuid4().hex[:8]}"
        )
        async with running_keeper(settings) as keeper:
            await wait_ready(keeper)
            held = keeper.book.get(token)
            assert held is not None
            opened = held.updated[0]
            keeper._sweep_due = lambda: True  # type: ignore[method-assign]  # read every position
            # a token the chain never had, last seen before the round's block: gone
            ghost = 10**9
            assert keeper.book.upsert(
                BookPosition(ghost, held.market_id, held.owner, True, 1, 1, 1, 0, (opened - 1, 0))
            )
            await keeper.health_round(opened - 1)  # a node one block behind the open
            assert keeper.book.get(token) is not None
            await keeper.health_round(opened)
            assert keeper.book.get(ghost) is None
            assert keeper.book.get(token) is not None
