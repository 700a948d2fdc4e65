"""A price crash liquidates every underwater position and leaves the healthy ones alone; the
off-chain margin mirror equals the contract's health view; traces link indexer -> keeper."""

from __future__ import annotations

import uuid
from pathlib import Path

from deploy_support import Deployed
from keeper_support import (
    BTC,
    ETH,
    KEEPER_KEY,
    address_of,
    crash,
    health_of,
    indexer_settings,
    keeper_settings,
    liquidations,
    open_positions,
    running_indexer,
    running_keeper,
    txs_from,
    wait_indexed,
    wait_ready,
    wait_until,
)
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from web3 import Web3

from perpex_dev.devstack.market import LocalMarket
from services.keeper.margin import health
from shared.telemetry import setup_telemetry


async def test_price_crash_liquidates_underwater_positions_only(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    topic: str,
    tmp_path: Path,
) -> None:
    spans = InMemorySpanExporter()
    reader = InMemoryMetricReader()
    setup_telemetry(
        "perpex-keeper-test",
        span_processors=[SimpleSpanProcessor(spans)],
        metric_readers=[reader],
        force=True,
    )
    deployment, dep_file = deployed
    market = LocalMarket(chain, deployment)
    spec = [
        (ETH, True, 15),
        (ETH, True, 18),
        (ETH, True, 2),
        (ETH, False, 10),
        (ETH, True, 10),
        (BTC, True, 15),
        (BTC, False, 15),
        (BTC, True, 3),
    ]
    book = open_positions(market, spec)
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    async with running_indexer(isettings) as indexer:
        await wait_indexed(indexer, chain)
        settings = keeper_settings(
            rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, f"g-{uuid.uuid4().hex[:8]}"
        )
        async with running_keeper(settings) as keeper:
            await wait_ready(keeper)
            assert set(keeper.book.positions) == set(book.positions)  # bootstrapped from PG
            # a position opened after start-up arrives through Kafka
            late = open_positions(market, [(ETH, True, 16)], trader_index=4)
            (late_token,) = late.positions
            book.positions.update(late.positions)
            await wait_until(lambda: late_token in keeper.book.positions)

            # the mirror equals the contract, position by position
            onchain = health_of(chain, deployment, sorted(book.positions))
            prices = {m: int(p) for m, p in keeper.prices.items()}
            for token, pos in keeper.book.positions.items():
                market_state = keeper.book.market(pos.market_id)
                h = health(
                    pos.is_long,
                    pos.collateral,
                    pos.size,
                    pos.notional,
                    keeper.book.entry_funding(pos),
                    market_state.cumulative_for(pos.is_long),
                    prices[pos.market_id],
                    market_state.mmr or 0,
                )
                assert (h.margin, h.maintenance, h.liquidatable) == (
                    onchain[token][3],
                    onchain[token][4],
                    onchain[token][2],
                )

            start = chain.eth.block_number
            crash(market, ETH, -0.06)  # 15x/16x/18x longs go under; the 10x long does not
            crash(market, BTC, +0.06)  # the 15x BTC short goes under
            underwater = {
                t for t, h in health_of(chain, deployment, sorted(book.positions)).items() if h[2]
            }
            assert underwater == book.tokens(
                lambda p, long_, lev: (p == ETH and long_ and lev >= 15) or (p == BTC and not long_)
            )
            await wait_until(lambda: underwater <= set(keeper.liquidated), within=30)
            healthy = set(book.positions) - underwater
            after = health_of(chain, deployment, sorted(book.positions))
            assert all(not after[t][1] for t in underwater)  # gone
            assert all(after[t][1] for t in healthy)  # untouched
            stats = dict(keeper.executor.stats)

    liqs = liquidations(chain, deployment, start)
    assert sorted(e["tokenId"] for e in liqs) == sorted(underwater)
    keeper_address = address_of(KEEPER_KEY)
    assert all(e["liquidator"] == keeper_address for e in liqs)
    sent = txs_from(chain, keeper_address, start)
    assert len(sent) == len(underwater) and all(t["status"] == 1 for t in sent)  # no waste
    assert stats["confirmed"] == len(underwater) and stats["mined_reverted"] == 0

    finished = spans.get_finished_spans()
    liq_spans = [s for s in finished if s.name == "keeper liquidate"]
    assert len(liq_spans) == len(underwater)
    by_id = {s.context.span_id: s for s in finished}
    # The late position came through Kafka: its liquidation span is a child of the keeper's
    # consume span, itself a child of the indexer span that published the event.
    (late_span,) = [s for s in liq_spans if s.attributes["perpex.token_id"] == late_token]
    parent = by_id.get(late_span.parent.span_id) if late_span.parent else None
    assert parent is not None and parent.name == "keeper consume"
    assert parent.parent is not None and parent.context.trace_id == late_span.context.trace_id
    assert any(
        c.name == "tx.send" and c.parent and c.parent.span_id == late_span.context.span_id
        for c in finished
    )
    chunk_traces = {s.context.trace_id for s in finished if s.name == "indexer chunk"}
    assert late_span.context.trace_id in chunk_traces

    names = {
        m.name: m
        for rm in (reader.get_metrics_data().resource_metrics if reader.get_metrics_data() else [])
        for sm in rm.scope_metrics
        for m in sm.metrics
    }
    assert "perpex_keeper_liquidations_confirmed" in names
    assert "perpex_keeper_health_rpc_calls" in names
    assert "perpex_keeper_wallet_balance_eth" in names
