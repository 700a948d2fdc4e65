"""Someone else's update is respected: the indexer publishes FundingRateUpdated to Kafka, the
updater learns of it there and sends nothing; and when another update lands between the
updater's read and its send, the simulation shows it and nothing is sent."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest
from funding_support import Chain, funding_settings, running, wait_for

from perpex_dev.devstack.accounts import TRADERS
from services.funding.app import open_updater
from services.funding.updater import UpdateOutcome
from services.indexer.app import open_app
from services.indexer.settings import IndexerSettings

OTHER = TRADERS[2]  # someone who is not the funding updater


def _indexer_settings(
    rpc_url: str, dsn: str, bootstrap: str, topic: str, deployment_file: Path
) -> IndexerSettings:
    return IndexerSettings(
        rpc_url=rpc_url,
        db_uri=dsn,
        kafka_bootstrap_servers=bootstrap,
        kafka_topic=topic,
        deployment_file=deployment_file,
        poll_interval_ms=100,
        markets="",
        position_manager_address=None,
        position_nft_address=None,
    )


async def test_update_by_another_party_is_respected(
    funded: Chain,
    deployment_file: Path,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="perpex.funding")
    settings = funding_settings(
        rpc_url,
        deployment_file,
        kafka_listen=True,
        kafka_bootstrap_servers=kafka_bootstrap,
        kafka_topic=topic,
        funding_grace_s=30,  # gives the other party the first go
    )
    eth = funded.mid("ETH/USDT")
    stop = asyncio.Event()
    async with open_app(
        _indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, deployment_file), lock_wait=30
    ) as indexer:
        indexing = asyncio.create_task(indexer.run(stop))
        try:
            async with running(settings) as updater:
                assert updater.listener is not None
                await wait_for(lambda: updater.listener.connected, "the Kafka listener", 30)
                await wait_for(lambda: updater.ready, "the first chain read")
                nonce0 = funded.wallet_nonce()
                eth_state = updater.markets["0x" + eth.hex()]
                btc_state = updater.markets["0x" + funded.mid("BTC/USDT").hex()]

                # Both windows open; within the grace delay another party updates ETH/USDT.
                funded.open_next_window()
                receipt = funded.send_as(OTHER, funded.pm, "updateFundingRate", eth)
                other_tx = receipt["transactionHash"].to_0x_hex()
                # The updater hears of it from Kafka (via the indexer) and knows who it was.
                await wait_for(lambda: eth_state.events >= 1, "the event from Kafka", 30)
                await wait_for(
                    lambda: updater.market_status(eth_state)["last_update_tx"] == other_tx,
                    "the updater to re-read the chain",
                )
                assert updater.market_status(eth_state)["last_update_by"] == "other"

                # Past the grace delay: BTC/USDT (nobody updated it) is ours, ETH/USDT is not.
                funded.advance(60)
                await wait_for(lambda: btc_state.confirmed == 1, "our BTC/USDT update", 30)
                await wait_for(lambda: btc_state.events >= 1, "our own event from Kafka", 30)
                await asyncio.sleep(1.0)
                assert updater.market_status(btc_state)["last_update_by"] == "us"
                assert eth_state.sent == 0 and btc_state.sent == 1
                assert funded.wallet_nonce() - nonce0 == 1
                assert [u["tx"] for u in funded.updates("ETH/USDT")] == [other_tx]
                assert len(funded.updates("BTC/USDT")) == 1
                assert updater.listener.decode_errors == 0
        finally:
            stop.set()
            await asyncio.wait_for(indexing, 30)
    assert "by another party" in caplog.text
    assert not [r for r in caplog.records if r.levelname == "ERROR" and "funding" in r.name]


async def test_update_between_read_and_send_means_nothing_sent(
    funded: Chain, deployment_file: Path, rpc_url: str
) -> None:
    settings = funding_settings(rpc_url, deployment_file, markets="ETH/USDT")
    async with open_updater(settings) as updater:
        state = next(iter(updater.markets.values()))
        funded.open_next_window()
        snapshot = await updater.reader.snapshot(state.ref)  # due, as the updater saw it
        assert snapshot.status().due
        nonce0 = funded.wallet_nonce()
        funded.send_as(OTHER, funded.pm, "updateFundingRate", state.ref.market_id)
        outcome = await updater.attempt(state, snapshot)
        assert outcome is UpdateOutcome.ALREADY_UPDATED
        assert funded.wallet_nonce() == nonce0  # the simulation said so: nothing was sent
        assert state.sent == 0 and state.reverts == 0
        assert len(funded.updates("ETH/USDT")) == 1
