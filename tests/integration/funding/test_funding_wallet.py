"""The funding wallet: its own key (FUNDING_PRIVATE_KEY), a warning when its balance falls below
FUNDING_MIN_BALANCE_ETH, the balance in the status and in the metrics."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from funding_support import Chain, funding_settings, running, wait_for


async def test_low_balance_warning(
    funded: Chain, deployment_file: Path, rpc_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    funded.rpc("anvil_setBalance", [funded.funding_address, hex(10**16)])  # 0.01 ETH
    settings = funding_settings(rpc_url, deployment_file, funding_min_balance_eth="0.05")
    async with running(settings) as updater:
        await wait_for(lambda: updater.wallet_low, "the balance check")
        status = updater.status()
        assert status["wallet"] == funded.funding_address
        assert status["wallet_balance_wei"] == str(10**16)
        points = updater.metric_points()["perpex_funding_wallet_balance_eth"]
        assert points == [(0.01, {"wallet": funded.funding_address})]
        # low is a warning, not a stop: the next window is still updated
        funded.open_next_window()
        await wait_for(lambda: all(s.confirmed == 1 for s in updater.markets.values()), "updates")
    assert any(
        "balance low" in r.getMessage() and funded.funding_address in r.getMessage()
        for r in caplog.records
        if r.levelname == "WARNING"
    )
