"""One rule for MARKETS in every service that takes it: a pair the PositionManager does not list
stops the indexer, the keeper and the funding updater with exit 2, naming the pair and the
markets that exist (the keeper died with a traceback, the indexer silently indexed nothing)."""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from pathlib import Path

from deploy_support import Deployed
from web3 import Web3

from perpex_dev.devstack.accounts import FUNDING, KEEPER, anvil_key

REPO = Path(__file__).resolve().parents[2]


async def _exit(argv: list[str], env: dict[str, str]) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "perpex_cli.main",
        *argv,
        cwd=str(REPO),
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    out, _ = await asyncio.wait_for(proc.communicate(), 90)
    assert proc.returncode is not None
    return proc.returncode, out.decode(errors="replace")


async def test_an_unknown_market_exits_2_naming_it_in_every_service(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    dep_file = deployed.path
    env = {
        **{
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("OTEL_", "PERPEX_", "FUNDING_", "KEEPER_", "LEASE_"))
            and k not in {"PRIVATE_KEY", "POSITION_MANAGER_ADDRESS", "LEADER_ELECTION"}
        },
        "RPC_URL": rpc_url,
        "DB_URI": fresh_db,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "KAFKA_TOPIC": topic,
        "DEPLOYMENT_FILE": str(dep_file),
        "MARKETS": "ETH/USDT,DOGE/USDT",
        "KEEPER_PRIVATE_KEY": anvil_key(KEEPER).get_secret_value(),
        "FUNDING_PRIVATE_KEY": anvil_key(FUNDING).get_secret_value(),
        "KEEPER_GROUP_ID": f"g-{uuid.uuid4().hex[:8]}",
        "LEADER_ELECTION": "none",
        "HEALTH_PORT": "0",
        "LOG_LEVEL": "INFO",
    }
    results = await asyncio.gather(
        _exit(["indexer"], env), _exit(["keeper"], env), _exit(["funding", "run"], env)
    )
    for (code, out), service in zip(results, ("indexer", "keeper", "funding"), strict=True):
        assert code == 2, (service, out[-2000:])
        assert f"invalid {service} configuration" in out, out[-2000:]
        assert "MARKETS: DOGE/USDT is not a market of PositionManager" in out, out[-2000:]
        assert "its markets: ETH/USDT, BTC/USDT" in out, out[-2000:]
        assert "Traceback" not in out, out[-3000:]
