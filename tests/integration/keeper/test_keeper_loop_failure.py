"""A keeper loop that dies must not leave a keeper that looks ready while its book has stopped
following the chain: it stops, reports not ready, and run() fails (the process exits 1)."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
from deploy_support import Deployed
from keeper_support import (
    ETH,
    indexer_settings,
    keeper_settings,
    open_positions,
    running_indexer,
    wait_indexed,
    wait_ready,
)
from web3 import Web3

from perpex_dev.devstack.market import LocalMarket
from services.keeper.app import Keeper
from shared.health import HealthState


async def test_a_dead_consumer_stops_the_keeper(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    open_positions(LocalMarket(chain, deployment), [(ETH, True, 2)])
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        settings = keeper_settings(
            rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, f"g-{uuid.uuid4().hex[:8]}"
        )
        keeper = Keeper(settings, HealthState())
        await keeper.start()
        run = asyncio.create_task(keeper.run())
        try:
            await wait_ready(keeper)
            assert keeper.consumer is not None

            async def broken(**_: object) -> object:
                raise RuntimeError("consumer bug")

            keeper.consumer.consumer.getmany = broken  # type: ignore[method-assign]
            with pytest.raises(RuntimeError, match="keeper-consumer ended unexpectedly"):
                await asyncio.wait_for(run, 30)
            assert not keeper.health.ready
        finally:
            if not run.done():
                keeper.stop()
                await asyncio.wait_for(run, 30)
