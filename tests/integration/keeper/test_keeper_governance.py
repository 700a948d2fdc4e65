"""A parameter change proposed, voted, queued and executed through `perpex gov` is applied by
the running keeper and funding updater from the events (no restart, no periodic re-read)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

from deploy_support import Deployed
from keeper_support import (
    FUNDING_KEY,
    indexer_settings,
    keeper_settings,
    running_indexer,
    running_keeper,
    wait_ready,
    wait_until,
)
from web3 import Web3

from perpex_dev.anvil import DEV_KEYS
from perpex_dev.devstack.accounts import anvil_key
from services.funding.app import open_updater
from services.funding.settings import load_funding_settings
from shared.chain.deployment import market_id_hex

REPO = Path(__file__).resolve().parents[3]
WAD = 10**18


def gov(rpc_url: str, dep_file: Path, *args: str) -> dict[str, Any]:
    env = {k: v for k, v in os.environ.items() if k not in ("PRIVATE_KEY", "GOV_PRIVATE_KEY")}
    env.update(
        {"RPC_URL": rpc_url, "DEPLOYMENT_FILE": str(dep_file), "GOV_PRIVATE_KEY": DEV_KEYS[0]}
    )
    proc = subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "gov", *args, "--json"],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


async def enact(w3: Web3, rpc_url: str, dep_file: Path, change: str) -> None:
    """propose -> vote -> queue -> execute, moving the dev chain's clock past each wait."""

    def advance(seconds: int) -> None:
        w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
        w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]

    def run() -> None:
        pid = gov(rpc_url, dep_file, "propose", change)["proposal_id"]
        advance(2)
        gov(rpc_url, dep_file, "vote", pid, "for")
        advance(61)
        assert gov(rpc_url, dep_file, "queue", pid)["state"] == "Queued"
        advance(31)
        assert gov(rpc_url, dep_file, "execute", pid)["state"] == "Executed"

    await asyncio.to_thread(run)


async def test_an_executed_change_reaches_the_running_keeper_and_funding_updater(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    assert deployment.governance is not None
    eth = market_id_hex("ETH/USDT")
    topic = f"perpex.events.gov.{uuid.uuid4().hex[:8]}"
    funding = load_funding_settings(
        rpc_url=rpc_url,
        funding_private_key=anvil_key(FUNDING_KEY).get_secret_value(),
        private_key=None,
        deployment_file=dep_file,
        position_manager_address=None,
        markets="ETH/USDT",
        leader_election="none",
        kafka_listen=True,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic=topic,
        # a full re-read of the market only every 10 min: the change must come from the event
        funding_max_sleep_s=60,
        funding_interval_s=deployment.funding_interval,
        poll_interval_ms=100,
        health_port=0,
    )
    keeper = keeper_settings(
        rpc_url,
        fresh_db,
        kafka_bootstrap,
        topic,
        dep_file,
        f"g-{uuid.uuid4().hex[:8]}",
        market_refresh_s=3600,  # no periodic re-read during the test either
    )
    async with (
        running_indexer(indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)),
        running_keeper(keeper) as k,
        open_updater(funding) as updater,
    ):
        stop = asyncio.Event()
        task = asyncio.create_task(updater.run(stop))
        try:
            await wait_ready(k)
            await wait_until(lambda: updater.markets[eth].snapshot is not None, 30)
            await wait_until(lambda: updater.listener is not None and updater.listener.connected)
            state = k.book.market(eth)
            assert state.mmr is not None and state.mmr != WAD * 4 // 100
            assert updater.markets[eth].snapshot.interval == deployment.funding_interval  # type: ignore[union-attr]

            await enact(chain, rpc_url, dep_file, "set ETH/USDT maintenanceMarginRatio 4%")
            await wait_until(lambda: k.book.market(eth).mmr == WAD * 4 // 100, 30)

            await enact(chain, rpc_url, dep_file, "set ETH/USDT fundingInterval 1h")
            await wait_until(
                lambda: (
                    updater.markets[eth].snapshot is not None
                    and updater.markets[eth].snapshot.interval == 3600
                ),
                30,
            )
            assert updater.markets[eth].events >= 1
        finally:
            stop.set()
            with contextlib.suppress(BaseException):
                await asyncio.wait_for(task, 30)
