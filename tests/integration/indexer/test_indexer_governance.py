"""The indexer records governance: proposals through their lifecycle (with votes) and the
parameter changes they make, from a governed deployment on a real anvil, into PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from deploy_support import Deployed
from indexer_support import db_rows, index_once, settings_for
from starlette.testclient import TestClient
from web3 import Web3

from perpex_dev.anvil import DEV_KEYS
from services.dashboard.app import create_app
from services.dashboard.settings import load_dashboard_settings
from shared.chain.abi import load_abi
from shared.chain.client import sync_web3
from shared.chain.governed import GovernedChanges

WAD = 10**18


async def test_proposals_and_parameter_changes_are_recorded(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    assert deployment.governance is not None
    w3 = sync_web3(rpc_url)
    pm = w3.eth.contract(
        address=deployment.contracts.position_manager, abi=load_abi("PositionManager")
    )
    eth = deployment.market("ETH/USDT")
    cfg = pm.functions.getMarket(eth.market_id_bytes).call()
    call = pm.encode_abi("setRiskParams", args=[eth.market_id_bytes, 7 * WAD, cfg[3], cfg[4]])
    gov = GovernedChanges(w3, deployment.governance, DEV_KEYS[0])
    proposal = gov.propose_calls(
        [(pm.address, bytes.fromhex(call[2:]))], "set ETH/USDT maxLeverage 7"
    )

    topic = "perpex.events.gov." + dep_file.stem
    settings = settings_for(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    status = await index_once(settings)
    assert status["decode_failures"] == {}
    rows = await db_rows(fresh_db, "SELECT * FROM governance_proposals")
    assert len(rows) == 1
    p = rows[0]
    assert int(p["proposal_id"]) == proposal.proposal_id
    assert p["status"] == "proposed" and p["description"] == "set ETH/USDT maxLeverage 7"
    assert p["targets"] == f'["{pm.address.lower()}"]'
    assert p["vote_end"] > p["vote_start"] and p["executed_block"] is None

    gov.carry_out(proposal)
    assert pm.functions.getMarket(eth.market_id_bytes).call()[2] == 7 * WAD
    await index_once(settings)
    p = (await db_rows(fresh_db, "SELECT * FROM governance_proposals"))[0]
    assert p["status"] == "executed"
    assert p["queued_block"] is not None and p["eta"] is not None
    assert p["executed_block"] > p["queued_block"]
    token = w3.eth.contract(address=deployment.governance.token, abi=load_abi("PerpExGovToken"))
    voter = w3.eth.account.from_key(DEV_KEYS[0]).address
    assert int(p["votes_for"]) == token.functions.getPastVotes(voter, p["vote_start"]).call()
    assert int(p["votes_against"]) == 0

    changes = await db_rows(
        fresh_db,
        "SELECT * FROM parameter_changes WHERE name = 'RiskParamsUpdated' "
        "ORDER BY block_number DESC, log_index DESC",
    )
    newest = changes[0]
    assert newest["market"] == "ETH/USDT" and newest["kind"] == "applied"
    assert newest["block_number"] == p["executed_block"]
    assert '"maxLeverage": "7000000000000000000"' in newest["args"]

    # the dashboard shows it: executed, with its votes, and the change's new values
    app = create_app(
        load_dashboard_settings(
            db_uri=fresh_db,
            kafka_bootstrap_servers=kafka_bootstrap,
            dashboard_kafka_feed=False,
            _env_file=None,
        )
    )

    def ask() -> tuple[Any, Any, Any]:
        with TestClient(app) as client:  # the real app, its lifespan, its own loop
            return (
                client.get("/api/governance?status=executed").json(),
                client.get("/api/governance?status=pending").json(),
                client.get("/api/governance?status=soon"),
            )

    body, pending, bad = await asyncio.to_thread(ask)
    assert [p["proposal_id"] for p in body["proposals"]] == [str(proposal.proposal_id)]
    shown = body["proposals"][0]
    assert shown["phase"] == "executed" and shown["description"] == "set ETH/USDT maxLeverage 7"
    assert float(shown["votes"]["for"]) > 0
    assert pending["proposals"] == [] and pending["total"] == 0
    risk = next(c for c in body["changes"] if c["name"] == "RiskParamsUpdated")
    assert risk["market"] == "ETH/USDT" and risk["values"]["maxLeverage"] == "7"
    assert bad.status_code == 400 and "status" in bad.text
