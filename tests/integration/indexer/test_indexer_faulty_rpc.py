"""Through a JSON-RPC proxy that injects 429s, 5xx, timeouts, truncated bodies and provider
limits, the indexer still converges to exactly the chain's state."""

from __future__ import annotations

from pathlib import Path

from deploy_support import Deployed
from indexer_support import (
    assert_db_matches_chain,
    chain_event_ids,
    index_once,
    settings_for,
)
from web3 import Web3

from perpex_dev.devstack.fault_proxy import FaultProxy
from perpex_dev.loadgen import LoadGen


async def test_converges_through_faulty_rpc(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    gen = LoadGen(rpc_url, deployment, seed=21, batch_size=6)
    gen.fund_traders()
    gen.scenario(120)
    gen.rpc.call("anvil_mine", [hex(300)])
    gen.open_positions(40)
    gen.close()
    expected = chain_event_ids(rpc_url, deployment)

    proxy = FaultProxy(
        rpc_url, seed=4, p_429=0.08, p_5xx=0.08, p_timeout=0.03, p_truncate=0.06,
        delay=0.8, max_span=60, max_results=150,
    )  # fmt: skip
    url = await proxy.start()
    try:
        settings = settings_for(
            url,
            fresh_db,
            kafka_bootstrap,
            "perpex.events.faulty." + dep_file.stem,
            dep_file,
            rpc_timeout_s=0.5,
            max_retries=8,
        )
        status = await index_once(settings)
    finally:
        await proxy.stop()
    await assert_db_matches_chain(fresh_db, rpc_url, deployment)
    assert status["events"] == len(expected)
    for kind in ("429", "5xx", "timeout", "truncate", "range", "too_many"):
        assert proxy.faults[kind] > 0, (kind, proxy.faults)
    assert {"rate_limited", "transient", "range_too_large", "too_many_results"} <= set(
        status["rpc_errors"]
    ), status["rpc_errors"]
