"""A reverting updateFundingRate (here: the oracle's price is stale) is reported with its
decoded reason, sends nothing, backs off instead of looping, and recovers once fixed."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from funding_support import Chain, funding_settings, running, wait_for

from perpex_dev.devstack.accounts import DEPLOYER
from shared.chain.abi import load_abi


async def test_revert_reports_its_reason_and_does_not_loop(
    funded: Chain, deployment_file: Path, rpc_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="perpex.funding")
    feed = funded.w3.eth.contract(
        address=funded.deployment.markets["ETH/USDT"].oracle_feed, abi=load_abi("SettableFeed")
    )
    answer = int(feed.functions.latestAnswer().call())
    # ETH/USDT's index price is now ancient: the oracle refuses it, so the update reverts.
    funded.send_as(DEPLOYER, feed, "setPriceWithTimestamp", answer, 1)
    settings = funding_settings(
        rpc_url, deployment_file, funding_revert_backoff_s=1.5, leader_election="none"
    )
    nonce0 = funded.wallet_nonce()
    async with running(settings) as updater:
        eth = next(s for s in updater.markets.values() if s.ref.pair == "ETH/USDT")
        btc = next(s for s in updater.markets.values() if s.ref.pair == "BTC/USDT")
        funded.open_next_window()
        await wait_for(lambda: eth.reverts >= 1, "the revert to be reported")
        await wait_for(lambda: btc.confirmed == 1, "the healthy market's update")
        await asyncio.sleep(3.0)  # back-off 1.5 s then 3 s: at most one more attempt
        assert 1 <= eth.reverts <= 2, eth.reverts
        assert eth.sent == 0  # every attempt stopped at the simulation: no gas spent
        status = updater.market_status(eth)
        assert status["decision"] == "backoff"
        assert status["last_error"].startswith("reverts: StalePrice(")
        assert funded.wallet_nonce() - nonce0 == 1  # only BTC/USDT's update went out
        assert funded.updates("ETH/USDT") == []

        # The feed is fixed: after the back-off the window is updated, exactly once.
        funded.send_as(DEPLOYER, feed, "setPrice", answer)
        await wait_for(lambda: eth.confirmed == 1, "the ETH/USDT update after the fix", 30)
        await asyncio.sleep(1.0)
    assert len(funded.updates("ETH/USDT")) == 1
    assert funded.wallet_nonce() - nonce0 == 2
    assert funded.wallet_receipts_ok() == [1, 1]
    errors = [r.getMessage() for r in caplog.records if r.levelname == "ERROR"]
    assert errors and all(
        "ETH/USDT: updateFundingRate would revert: StalePrice(" in e for e in errors
    )
    assert "nothing sent" in errors[0]
