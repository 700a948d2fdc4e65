"""A chain re-read the keeper owes (after a reverted event, say) that fails is tried again at
the next health round: the event that asked for it is already acknowledged."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

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
    wait_until,
)
from web3 import Web3

from perpex_dev.devstack.market import LocalMarket
from services.keeper.book import ApplyResult


async def test_a_failed_reread_is_retried(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    (token,) = open_positions(LocalMarket(chain, deployment), [(ETH, True, 2)]).tokens(
        lambda *_: True
    )
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        settings = keeper_settings(
            rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, f"g-{uuid.uuid4().hex[:8]}"
        )
        async with running_keeper(settings) as keeper:
            await wait_ready(keeper)
            keeper.book.remove(token, tombstone=False)  # as if its state were in doubt
            read = keeper.chain.position
            calls = 0

            async def flaky(token_id: int) -> Any:
                nonlocal calls
                calls += 1
                if calls == 1:
                    raise TimeoutError("node did not answer")
                return await read(token_id)

            keeper.chain.position = flaky  # type: ignore[method-assign]
            await keeper._on_results([ApplyResult("applied", refresh=(token,))])
            assert keeper.book.get(token) is None and calls == 1
            await wait_until(lambda: keeper.book.get(token) is not None, within=15)
            assert calls >= 2
