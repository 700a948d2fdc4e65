"""Deploy on a real anvil with the Foundry script, then trade through web3 with the ABIs from
contracts/out and check what the services rely on: views, structs and decoded events."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from web3 import Web3
from web3.exceptions import ContractCustomError, ContractLogicError
from web3.logs import DISCARD
from web3.types import RPCEndpoint

from perpex_dev.anvil import DEV_KEYS, AnvilProcess
from shared.chain.abi import ArtifactNotFoundError, load_abi, load_artifact
from shared.chain.deploy_cli import deploy as deploy_cmd
from shared.chain.deployment import Deployment, market_id, market_id_hex

WAD = 10**18


def _send(w3: Web3, fn: Any, sender: str) -> dict[str, Any]:
    receipt = w3.eth.wait_for_transaction_receipt(fn.transact({"from": sender}))
    assert receipt["status"] == 1
    return dict(receipt)


def test_deployment_file(deployment: Deployment, contracts_w3: Web3) -> None:
    assert deployment.chain_id == 31337 == contracts_w3.eth.chain_id
    assert deployment.start_block <= contracts_w3.eth.block_number
    assert deployment.deployer == contracts_w3.eth.account.from_key(DEV_KEYS[0]).address
    assert set(deployment.markets) == {"ETH/USDT", "BTC/USDT"}
    assert deployment.market("ETH/USDT").market_id_bytes == Web3.keccak(text="ETH/USDT")
    assert deployment.market("ETH/USDT").initial_price == "2000"
    assert deployment.funding_interval == 8 * 3600
    for address in [*deployment.contracts.by_name().values()]:
        assert contracts_w3.eth.get_code(address) != b""
    # the market registry on chain matches the file
    pm = contracts_w3.eth.contract(
        address=deployment.contracts.position_manager, abi=load_abi("PositionManager")
    )
    assert [bytes(x) for x in pm.functions.marketIds().call()] == [
        market_id("ETH/USDT"),
        market_id("BTC/USDT"),
    ]
    for pair, m in deployment.markets.items():
        cfg = pm.functions.getMarket(m.market_id_bytes).call()
        assert cfg[0] == m.vamm and cfg[1] == m.oracle_feed, pair
        assert cfg[5] == 8 * 3600
        assert pm.functions.indexPrice(m.market_id_bytes).call() == int(m.initial_price) * WAD
    vault = contracts_w3.eth.contract(address=deployment.contracts.vault, abi=load_abi("Vault"))
    token = contracts_w3.eth.contract(
        address=deployment.contracts.collateral_token, abi=load_abi("CollateralToken")
    )
    assert vault.functions.liquidity().call() >= 10_000_000 * WAD
    assert (
        token.functions.balanceOf(vault.address).call() == vault.functions.totalAccounted().call()
    )


def test_open_position_read_back_and_events(deployment: Deployment, contracts_w3: Web3) -> None:
    w3 = contracts_w3
    trader = w3.eth.account.from_key(DEV_KEYS[3]).address
    c = deployment.contracts
    pm = w3.eth.contract(address=c.position_manager, abi=load_abi("PositionManager"))
    nft = w3.eth.contract(address=c.position_nft, abi=load_abi("PositionNFT"))
    vault = w3.eth.contract(address=c.vault, abi=load_abi("Vault"))
    token = w3.eth.contract(address=c.collateral_token, abi=load_abi("CollateralToken"))
    eth = deployment.market("ETH/USDT").market_id_bytes

    _send(w3, token.functions.faucet(10_000 * WAD), trader)
    _send(w3, token.functions.approve(vault.address, 10_000 * WAD), trader)
    r = _send(w3, vault.functions.deposit(10_000 * WAD), trader)
    assert (
        vault.events.Deposited().process_receipt(r, errors=DISCARD)[0]["args"]["amount"]
        == 10_000 * WAD
    )

    receipt = _send(w3, pm.functions.openPosition(eth, True, 1_000 * WAD, 5 * WAD, 0), trader)
    minted = nft.events.PositionMinted().process_receipt(receipt, errors=DISCARD)
    opened = pm.events.PositionOpened().process_receipt(receipt, errors=DISCARD)
    assert len(minted) == 1 and len(opened) == 1
    assert minted[0]["logIndex"] < opened[0]["logIndex"]
    ev = opened[0]["args"]
    token_id = ev["tokenId"]
    assert minted[0]["args"]["tokenId"] == token_id
    assert ev["owner"] == trader and bytes(ev["marketId"]) == eth
    assert ev["isLong"] is True
    assert ev["collateral"] == 1_000 * WAD and ev["leverage"] == 5 * WAD
    assert ev["notional"] == 5_000 * WAD
    assert ev["entryPrice"] == ev["notional"] * WAD // ev["size"]
    assert ev["fee"] == 5 * WAD

    # getPosition and the NFT's view return the same struct
    pos = pm.functions.getPosition(token_id).call()
    assert pos == nft.functions.positionOf(token_id).call()
    (mid, is_long, collateral, leverage, size, notional, entry, entry_funding, opened_at, blk) = pos
    assert bytes(mid) == eth and is_long
    assert (collateral, leverage, size, notional, entry) == (
        ev["collateral"],
        ev["leverage"],
        ev["size"],
        ev["notional"],
        ev["entryPrice"],
    )
    assert entry_funding == 0
    assert blk == receipt["blockNumber"]
    assert opened_at == w3.eth.get_block(receipt["blockNumber"])["timestamp"]
    assert nft.functions.ownerOf(token_id).call() == trader

    # batch health: the open position and an unknown id
    health = pm.functions.getPositionsHealth([token_id, 999_999]).call()
    tid, exists, liquidatable, margin, mm, index = health[0]
    assert (tid, exists, liquidatable, index) == (token_id, True, False, 2000 * WAD)
    assert margin > mm > 0
    assert health[1][:3] == (999_999, False, False)
    assert pm.functions.isPositionLiquidatable(token_id).call() is False

    # soulbound: every transfer and approval path reverts
    other = w3.eth.account.from_key(DEV_KEYS[4]).address
    for call in (
        nft.functions.transferFrom(trader, other, token_id),
        nft.functions.safeTransferFrom(trader, other, token_id),
        nft.functions.approve(other, token_id),
        nft.functions.setApprovalForAll(other, True),
    ):
        with pytest.raises((ContractCustomError, ContractLogicError)):
            call.call({"from": trader})

    # funding cannot be updated before the interval has passed
    with pytest.raises((ContractCustomError, ContractLogicError)):
        pm.functions.updateFundingRate(eth).call({"from": other})

    # close: PositionClosed and PositionBurned decode, the position is gone
    receipt = _send(w3, pm.functions.closePosition(token_id, 0), trader)
    closed = pm.events.PositionClosed().process_receipt(receipt, errors=DISCARD)[0]["args"]
    burned = nft.events.PositionBurned().process_receipt(receipt, errors=DISCARD)[0]["args"]
    assert closed["tokenId"] == burned["tokenId"] == token_id
    assert closed["owner"] == trader and closed["realizedPnl"] < 0  # round trip pays the spread
    assert pm.functions.getPosition(token_id).call()[4] == 0


def test_funding_and_liquidation_events(deployment: Deployment, contracts_w3: Web3) -> None:
    w3 = contracts_w3
    c = deployment.contracts
    trader = w3.eth.account.from_key(DEV_KEYS[4]).address
    keeper = w3.eth.account.from_key(DEV_KEYS[1]).address
    pm = w3.eth.contract(address=c.position_manager, abi=load_abi("PositionManager"))
    vault = w3.eth.contract(address=c.vault, abi=load_abi("Vault"))
    token = w3.eth.contract(address=c.collateral_token, abi=load_abi("CollateralToken"))
    btc = deployment.market("BTC/USDT")
    _send(w3, token.functions.faucetTo(trader, 5_000 * WAD), trader)
    _send(w3, token.functions.approve(vault.address, 5_000 * WAD), trader)
    _send(w3, vault.functions.deposit(5_000 * WAD), trader)
    r = _send(
        w3, pm.functions.openPosition(btc.market_id_bytes, True, 1_000 * WAD, 10 * WAD, 0), trader
    )
    token_id = pm.events.PositionOpened().process_receipt(r, errors=DISCARD)[0]["args"]["tokenId"]

    w3.provider.make_request(RPCEndpoint("evm_increaseTime"), [deployment.funding_interval])
    w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    r = _send(w3, pm.functions.updateFundingRate(btc.market_id_bytes), keeper)
    fr = pm.events.FundingRateUpdated().process_receipt(r, errors=DISCARD)[0]["args"]
    assert bytes(fr["marketId"]) == btc.market_id_bytes
    assert fr["fundingRate"] > 0  # mark above index after a long: longs pay
    long, short = pm.functions.cumulativeFunding(btc.market_id_bytes).call()
    assert (fr["cumulativeFundingLong"], fr["cumulativeFundingShort"]) == (long, short)
    assert fr["fundingPerSecond"] > 0
    assert pm.functions.lastFundingTime(btc.market_id_bytes).call() == fr["timestamp"]

    feed = w3.eth.contract(address=btc.oracle_feed, abi=load_abi("SettableFeed"))
    _send(w3, feed.functions.setPrice(54_000 * 10**btc.feed_decimals), deployment.deployer)
    assert pm.functions.isPositionLiquidatable(token_id).call() is True
    r = _send(w3, pm.functions.liquidatePosition(token_id), keeper)
    liq = pm.events.PositionLiquidated().process_receipt(r, errors=DISCARD)[0]["args"]
    assert liq["tokenId"] == token_id and liq["owner"] == trader
    assert liq["liquidator"] == keeper and liq["liquidatorReward"] > 0
    # the keeper also updated funding: its reward from the insurance fund
    funding_reward = pm.functions.fundingReward().call()
    assert vault.functions.freeCollateral(keeper).call() == liq["liquidatorReward"] + funding_reward


def test_deploy_cli_never_prints_the_key(
    contracts_anvil: AnvilProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = DEV_KEYS[2]
    monkeypatch.setenv("DEPLOYER_KEY", key)
    out = tmp_path / "dep.json"
    result = CliRunner().invoke(
        deploy_cmd,
        ["--rpc-url", contracts_anvil.url, "--out", str(out), "--private-key-env", "DEPLOYER_KEY"],
    )
    assert result.exit_code == 0, result.output
    assert key not in result.output and key[2:] not in result.output
    data = json.loads(out.read_text())
    assert Deployment.from_dict(data).deployer == Web3().eth.account.from_key(key).address

    monkeypatch.delenv("DEPLOYER_KEY")
    result = CliRunner().invoke(deploy_cmd, ["--private-key-env", "DEPLOYER_KEY"])
    assert result.exit_code != 0 and "DEPLOYER_KEY" in result.output


def test_artifacts_and_deployment_model(tmp_path: Path) -> None:
    art = load_artifact("PositionManager")
    assert art.bytecode.startswith("0x") and len(art.bytecode) > 1000
    names = {e.get("name") for e in art.abi if e["type"] == "event"}
    assert {
        "PositionOpened",
        "PositionClosed",
        "PositionLiquidated",
        "MarginChanged",
        "FundingRateUpdated",
    } <= names
    with pytest.raises(ArtifactNotFoundError, match="NoSuchContract"):
        load_artifact("NoSuchContract", build_if_missing=False)

    assert market_id_hex("ETH/USDT") == "0x" + Web3.keccak(text="ETH/USDT").hex().removeprefix("0x")
    sample: dict[str, Any] = {
        "chain_id": 31337,
        "start_block": 5,
        "deployer": "0xf39fd6e51aad88f6f4ce6ab8827279cfffb92266",
        "contracts": {
            k: "0x" + "11" * 20
            for k in ("PositionManager", "PositionNFT", "Vault", "CollateralToken", "PriceOracle")
        },
        "markets": {
            "ETH/USDT": {
                "market_id": market_id_hex("ETH/USDT"),
                "vamm": "0x" + "22" * 20,
                "oracle_feed": "0x" + "33" * 20,
                "initial_price": "2000",
            }
        },
    }
    dep = Deployment.from_dict(sample)
    assert dep.deployer == "0xf39Fd6e51aad88F6F4ce6aB8827279cffFb92266"
    path = dep.save(tmp_path / "d.json")
    assert Deployment.load(path) == dep
    assert dep.pair_of(market_id("ETH/USDT")) == "ETH/USDT"
    sample["markets"]["ETH/USDT"]["market_id"] = market_id_hex("BTC/USDT")
    with pytest.raises(ValueError, match="keccak256"):
        Deployment.from_dict(sample)
