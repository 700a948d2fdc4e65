"""One trace from chain log to liquidation receipt: the indexer's span that publishes an event,
the keeper's span that consumes it from Kafka and the liquidation it sends share a trace id
(W3C trace context travels in the Kafka message headers)."""

from __future__ import annotations

import uuid
from pathlib import Path

from deploy_support import Deployed
from keeper_support import (
    ETH,
    crash,
    indexer_settings,
    keeper_settings,
    liquidations,
    open_positions,
    running_indexer,
    running_keeper,
    wait_indexed,
    wait_ready,
    wait_until,
)
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from web3 import Web3

from perpex_dev.devstack.market import LocalMarket
from shared.telemetry import add_span_processor


async def test_event_to_liquidation_is_one_trace(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    exporter = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(exporter), "perpex-test")
    deployment, dep_file = deployed
    market = LocalMarket(chain, deployment)
    topic = f"trace-{uuid.uuid4().hex[:8]}"
    isettings = indexer_settings(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    ksettings = keeper_settings(
        rpc_url, fresh_db, kafka_bootstrap, topic, dep_file, group=f"g-{uuid.uuid4().hex[:8]}"
    )
    async with running_indexer(isettings) as indexer, running_keeper(ksettings) as keeper:
        await wait_ready(keeper)
        # The keeper learns of the position from Kafka (not its database bootstrap).
        book = open_positions(market, [(ETH, True, 10)])
        (token,) = book.tokens()
        await wait_indexed(indexer, chain)
        await wait_until(lambda: token in keeper.book.positions, within=30)
        crash(market, ETH, -0.15)
        await wait_until(lambda: liquidations(chain, deployment), within=60)

    spans = exporter.get_finished_spans()
    receipts = [s for s in spans if s.name == "tx.confirm" and s.attributes
                and s.attributes.get("tx.label", "").startswith("liquidat")]  # fmt: skip
    assert receipts, sorted({s.name for s in spans})
    trace_id = receipts[0].context.trace_id
    in_trace = {s.name for s in spans if s.context.trace_id == trace_id}
    assert "indexer chunk" in in_trace  # the indexer read the log from the chain
    assert "db write_chunk" in in_trace  # ... and wrote it with its outbox row
    assert "keeper consume" in in_trace  # the keeper consumed it from Kafka
    assert "keeper liquidate" in in_trace
    assert "tx.send" in in_trace
    (liq,) = liquidations(chain, deployment)
    assert liq["tokenId"] == token
    assert receipts[0].attributes["tx.hash"] == "0x" + bytes(liq["tx"]).hex()
