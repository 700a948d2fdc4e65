"""Losing partitions in a rebalance: their positions leave the book before the keeper waits for
its in-flight liquidations, so a health round running meanwhile cannot start one that the
partitions' next owner will start too."""

from __future__ import annotations

import uuid
from collections.abc import Callable
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


async def test_revoked_positions_leave_the_book_before_the_wait(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    open_positions(LocalMarket(chain, deployment), [(ETH, True, 2), (ETH, False, 3)])
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        settings = keeper_settings(
            rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, f"g-{uuid.uuid4().hex[:8]}"
        )
        async with running_keeper(settings) as keeper:
            await wait_ready(keeper)
            assert keeper.consumer is not None and len(keeper.book) == 2
            held_during_wait: list[int] = []

            async def release(match: Callable[[int], bool], wait_s: float) -> int:
                held_during_wait.append(len(keeper.book))
                return 0

            keeper.executor.release = release  # type: ignore[method-assign]
            ownership = keeper.consumer.ownership
            await keeper._on_revoked(ownership, set(ownership.owned))
            assert held_during_wait == [0]
