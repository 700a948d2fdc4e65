"""The page in a real headless Chromium: it loads from the server alone, shows the indexed data,
and updates live when an event arrives on Kafka; a screenshot is saved afterwards.

Needs Debian's `chromium` package; skipped (with that reason) when it is not installed. Set
PERPEX_SCREENSHOT_DIR to also copy the screenshot there (docs/img/dashboard.png is made so).
"""

from __future__ import annotations

import asyncio
import os
import shutil
import struct
from pathlib import Path

import asyncpg
import pytest
from chromium_cdp import Browser, find_chromium
from dashboard_support import (
    BTC,
    ETH,
    PM,
    T0,
    StartDashboard,
    envelope,
    publish,
    wad,
    wait_feed_live,
)

CHROMIUM = find_chromium()


@pytest.mark.skipif(
    CHROMIUM is None,
    reason="tool missing: chromium is not installed (Debian: apt-get install -y chromium)",
)
async def test_page_updates_live_and_screenshot(
    indexer_db: str,
    topic: str,
    kafka_bootstrap: str,
    start_dashboard: StartDashboard,
    tmp_path: Path,
) -> None:
    assert CHROMIUM is not None
    running = await start_dashboard(indexer_db, topic)
    await wait_feed_live(running.url)
    browser = Browser(CHROMIUM, tmp_path)
    try:
        await browser.start()
        await browser.goto(running.url + "/")
        await browser.wait_for(
            "document.getElementById('conn').dataset.state === 'live'"
            " && document.querySelectorAll('#positions tbody tr').length === 8"
            " && document.querySelectorAll('#markets tbody tr').length === 3"
            " && document.querySelectorAll('#funding-chart circle').length === 24"
            " && document.querySelectorAll('#liquidations tbody tr').length === 2",
            what="initial data and a live WebSocket",
        )
        eth_row = await browser.evaluate(
            f"document.querySelector('#markets tr[data-market-id=\"{ETH}\"]').innerText"
        )
        assert "ETH/USDT" in eth_row and "5,000" in eth_row and "8,000" in eth_row

        # The indexer writes its rows, then its outbox publishes the events to Kafka.
        conn = await asyncpg.connect(indexer_db)
        try:
            await conn.execute(
                """INSERT INTO positions (token_id, market_id, market, owner, is_long,
                       collateral, leverage, size, notional, entry_price, entry_funding_index,
                       open_fee, status, opened_block, opened_timestamp, opened_tx, updated_block)
                   VALUES (9, $1, 'ETH/USDT', $2, true, $3, $4, $5, $6, $7, 0, 0, 'open',
                           70, $8, '0x09', 70)""",
                ETH,
                PM,
                wad(1050),
                wad(3),
                wad(1.5),
                wad(3150),
                wad(2100),
                T0 + 70 * 600,
            )
            for market, log_index in ((ETH, 0), (BTC, 1)):
                await conn.execute(
                    """INSERT INTO funding_updates (market_id, funding_rate,
                           cumulative_funding_index, mark_twap, index_twap, funding_timestamp,
                           tx_hash, log_index, block_number, block_timestamp)
                       VALUES ($1, $2, 0, $3, $3, $4, '0x71', $5, 71, $4)""",
                    market,
                    wad("0.00015"),
                    wad(2000),
                    T0 + 24 * 3600,
                    log_index,
                )
            await conn.execute(
                "UPDATE positions SET collateral = $1, updated_block = 72 WHERE token_id = 1",
                wad(1100),
            )
        finally:
            await conn.close()
        opened = envelope(
            "PositionOpened",
            9,
            {
                "tokenId": "9",
                "owner": PM,
                "isLong": True,
                "collateral": str(wad(1050)),
                "leverage": str(wad(3)),
                "size": str(wad(1.5)),
                "notional": str(wad(3150)),
                "entryPrice": str(wad(2100)),
                "fee": "0",
            },
            tx_hash="0x09",
        )
        funding = envelope(
            "FundingRateUpdated",
            None,
            {"fundingRate": str(wad("0.00015")), "cumulativeFundingLong": "0"},
            tx_hash="0x71",
            block_number=71,
        )
        margin = envelope(
            "MarginChanged",
            1,
            {"tokenId": "1", "delta": str(wad(100)), "newCollateral": str(wad(1100))},
            tx_hash="0x72",
            block_number=72,
        )
        await publish(kafka_bootstrap, topic, opened, funding, margin)

        summary = await browser.wait_for(
            f"(document.querySelector('#feed li[data-event-id=\"{opened.event_id}\"]')"
            " || {}).innerText",
            what="the PositionOpened event in the live feed",
        )
        assert "PositionOpened" in summary
        assert "long 1.5 ETH/USDT @ 2100 (3x, collateral 1050)" in summary
        await browser.wait_for(
            f"!!document.querySelector('#feed li[data-event-id=\"{funding.event_id}\"]')",
            what="the FundingRateUpdated event in the live feed",
        )
        row = await browser.wait_for(
            "(document.querySelector('#positions tbody tr[data-token-id=\"9\"]') || {}).innerText",
            what="the new position in the positions table (refreshed live)",
        )
        assert "#9" in row and "3,150" in row and "long" in row
        await browser.wait_for(
            "document.querySelectorAll('#funding-chart circle').length === 25",
            what="the funding chart's new point",
        )
        await browser.wait_for(
            f"document.querySelector('#markets tr[data-market-id=\"{ETH}\"]')"
            ".innerText.includes('0.015%')",
            what="the new ETH funding rate in the markets table",
        )
        await browser.wait_for(
            "(document.querySelector('#positions tbody tr[data-token-id=\"1\"]') || {})"
            ".innerText.includes('1,100')",
            what="the existing position's new collateral after MarginChanged",
        )
        await browser.wait_for(
            "document.querySelectorAll('#feed li').length === 3",
            what="the three events in the live feed",
        )
        feed = await browser.evaluate(
            "Array.from(document.querySelectorAll('#feed li')).map(li => li.dataset.name)"
        )
        assert feed == ["MarginChanged", "FundingRateUpdated", "PositionOpened"]  # newest first
        assert await browser.evaluate("document.getElementById('feed-count').textContent") == "(3)"

        png = tmp_path / "dashboard.png"
        await browser.wait_for(  # the highlight animation of the new rows has faded
            "document.getAnimations().every(a => a.animationName !== 'flash')",
            what="the new rows' highlight to fade",
        )
        data = await browser.screenshot(png)
        assert data[:8] == b"\x89PNG\r\n\x1a\n"
        width, height = struct.unpack(">II", data[16:24])
        assert width == 1440 and height >= 900
        assert len(data) > 20_000
        target = os.environ.get("PERPEX_SCREENSHOT_DIR")
        if target:
            await asyncio.to_thread(_copy_screenshot, png, Path(target))

        # Everything came from the dashboard itself: no CDN, no other host.
        origins = (running.url + "/", running.ws_url, "data:")
        foreign = [u for u in browser.requests if not u.startswith(origins)]
        assert not foreign, f"requests to other origins: {foreign}"
        assert any(u == running.ws_url for u in browser.requests)
        assert not browser.exceptions, browser.exceptions
        assert not browser.console_errors, browser.console_errors
    finally:
        await browser.close()


def _copy_screenshot(png: Path, target: Path) -> None:
    target.mkdir(parents=True, exist_ok=True)
    shutil.copy(png, target / "dashboard.png")
