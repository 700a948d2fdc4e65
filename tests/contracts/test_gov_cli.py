"""`perpex gov` against a governed deployment on a real anvil: a readable change is proposed,
voted, queued and executed, and only then applies; bad input is refused before anything is
sent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from web3 import Web3

from perpex_dev.anvil import DEV_KEYS, AnvilProcess
from shared.chain.abi import load_abi
from shared.chain.deployment import Deployment

REPO = Path(__file__).resolve().parents[2]


def gov(anvil: AnvilProcess, dep_file: Path, *args: str, key: str | None = DEV_KEYS[0]) -> Any:
    env = {k: v for k, v in os.environ.items() if k not in ("PRIVATE_KEY", "GOV_PRIVATE_KEY")}
    env.update({"RPC_URL": anvil.url, "DEPLOYMENT_FILE": str(dep_file)})
    if key is not None:
        env["GOV_PRIVATE_KEY"] = key
    return subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "gov", *args],
        capture_output=True, text=True, timeout=120, env=env, cwd=REPO,
    )  # fmt: skip


def advance(w3: Web3, seconds: int) -> None:
    w3.provider.make_request("evm_increaseTime", [seconds])  # type: ignore[arg-type]
    w3.provider.make_request("evm_mine", [])  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def dep_file(deployment: Deployment, tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("gov") / "deployment.json"
    path.write_text(json.dumps(deployment.to_dict()))
    return path


def test_a_change_goes_through_propose_vote_queue_execute(
    contracts_anvil: AnvilProcess, contracts_w3: Web3, deployment: Deployment, dep_file: Path
) -> None:
    assert deployment.governance is not None
    pm = contracts_w3.eth.contract(
        address=deployment.contracts.position_manager, abi=load_abi("PositionManager")
    )
    eth = deployment.market("ETH/USDT").market_id_bytes
    before = pm.functions.getMarket(eth).call()
    assert pm.functions.owner().call() == deployment.governance.timelock

    p = gov(contracts_anvil, dep_file, "propose", "set ETH/USDT maxLeverage 15", "--json")
    assert p.returncode == 0, p.stderr
    pid = json.loads(p.stdout)["proposal_id"]
    advance(contracts_w3, 2)
    v = gov(contracts_anvil, dep_file, "vote", pid, "for")
    assert v.returncode == 0, v.stderr
    s = json.loads(gov(contracts_anvil, dep_file, "status", pid, "--json").stdout)["proposals"][0]
    assert s["state"] == "Active" and s["next"] == "voting ends" and s["seconds_left"] > 0
    assert int(s["votes"]["for"]) == 10_000_000 * 10**18
    q = gov(contracts_anvil, dep_file, "queue", pid)
    assert q.returncode == 1 and "refused" in q.stderr  # the vote is still open
    advance(contracts_w3, 61)
    q = gov(contracts_anvil, dep_file, "queue", pid, "--json")
    assert q.returncode == 0, q.stderr
    assert json.loads(q.stdout)["state"] == "Queued"
    e = gov(contracts_anvil, dep_file, "execute", pid)
    assert e.returncode == 1 and "TimelockUnexpectedOperationState" in e.stderr  # too early
    assert pm.functions.getMarket(eth).call()[2] == before[2]  # not applied
    advance(contracts_w3, 31)
    e = gov(contracts_anvil, dep_file, "execute", pid, "--json")
    assert e.returncode == 0, e.stderr
    after = pm.functions.getMarket(eth).call()
    assert after[2] == 15 * 10**18
    assert after[3:5] == before[3:5]  # the other risk parameters kept
    text = gov(contracts_anvil, dep_file, "status").stdout
    assert "Executed" in text and "set ETH/USDT maxLeverage 15" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ("propose", "set DOGE/USDT maxLeverage 15"),
            "unknown market 'DOGE/USDT'; markets: BTC/USDT, ETH/USDT",
        ),
        (("propose", "set ETH/USDT maxLeverige 15"), "unknown parameter"),
        (("propose", "set ETH/USDT mmr 120%"), "ratio above 100%"),
        (("vote", "123", "for"), "no proposal 123"),
        (("queue", "not-a-number"), "is not a proposal id"),
    ],
)
def test_bad_input_exits_2_before_sending(
    contracts_anvil: AnvilProcess, dep_file: Path, args: tuple[str, ...], message: str
) -> None:
    r = gov(contracts_anvil, dep_file, *args)
    assert r.returncode == 2, (r.stdout, r.stderr)
    assert message in r.stderr
    assert "Traceback" not in r.stderr


def test_the_key_comes_from_the_environment_only(
    contracts_anvil: AnvilProcess, dep_file: Path
) -> None:
    r = gov(contracts_anvil, dep_file, "propose", "pause ETH/USDT", key=None)
    assert r.returncode == 2 and "GOV_PRIVATE_KEY" in r.stderr
    r = gov(contracts_anvil, dep_file, "propose", "pause ETH/USDT", "--private-key", "0x1")
    assert r.returncode == 2  # no such option: a key is never a flag
