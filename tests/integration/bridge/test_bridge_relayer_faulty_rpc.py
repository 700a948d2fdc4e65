"""`perpex relayer` through the project's fault proxy on both chains (429s, 5xx, cut-short
bodies): reads and sends are retried with back-off, and a deposit and a withdrawal still cross
exactly once."""

from __future__ import annotations

import asyncio
import sys

from bridge_support import BridgeEnv, environ

from perpex_dev.devstack.fault_proxy import FaultProxy

WAD = 10**18


async def test_relayer_delivers_exactly_once_through_a_faulty_rpc(bridged: BridgeEnv) -> None:
    env = bridged
    trader = env.home.eth.accounts[8]
    deposit = env.bridge.deposit(trader, 300 * WAD)
    async with (
        FaultProxy(env.stack.anvil.url, seed=3, p_429=0.05, p_5xx=0.05, p_truncate=0.1) as home,
        FaultProxy(env.stack.remote_anvil.url, seed=4, p_429=0.05, p_5xx=0.05,
                   p_truncate=0.1) as remote,
    ):  # fmt: skip
        relayer_env = {
            **environ(),
            **env.relayer_env(),
            "RPC_URL": home.url,
            "REMOTE_RPC_URL": remote.url,
            "HEALTH_PORT": "0",
            "MAX_RETRIES": "8",
            "RELAYER_REPLACE_AFTER_S": "1",
            "RELAYER_BACKOFF_MAX_S": "1",
        }
        log_path = env.workdir / "relayer-faulty.log"

        async def relay() -> int:
            with log_path.open("ab") as log:
                proc = await asyncio.create_subprocess_exec(
                    sys.executable, "-m", "perpex_cli.main", "relayer", "--until-idle",
                    env=relayer_env, stdout=log, stderr=log,
                )  # fmt: skip
                return await asyncio.wait_for(proc.wait(), 90)

        assert await relay() == 0, log_path.read_text()[-3000:]
        assert env.bridge.deliveries(deposit.guid) == 1
        assert env.bridge.free_collateral(trader) == 300 * WAD

        withdrawal = await asyncio.to_thread(env.bridge.withdraw, trader, 120 * WAD)
        assert await relay() == 0, log_path.read_text()[-3000:]
        faults = sum(home.faults.values()) + sum(remote.faults.values())
    assert env.bridge.deliveries(withdrawal.guid) == 1
    assert env.bridge.remote_balance(trader) == 120 * WAD
    assert env.bridge.free_collateral(trader) == 180 * WAD
    assert faults > 5, "the proxy did inject faults"
