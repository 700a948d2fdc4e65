"""Backfill of a few hundred positions (every event kind) equals the chain, in PostgreSQL and on
Kafka, with per-position order and trace headers."""

from __future__ import annotations

from pathlib import Path

from deploy_support import Deployed
from indexer_support import (
    assert_db_matches_chain,
    chain_event_ids,
    consume,
    db_rows,
    ids_of,
    index_once,
    settings_for,
)
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from web3 import Web3

from perpex_dev.loadgen import LoadGen
from shared.telemetry import add_span_processor


async def test_backfill_equals_chain(
    chain: Web3,
    deployed: Deployed,
    rpc_url: str,
    fresh_db: str,
    kafka_bootstrap: str,
    tmp_path: Path,
) -> None:
    deployment, dep_file = deployed
    gen = LoadGen(rpc_url, deployment, seed=11, batch_size=40)
    gen.fund_traders()
    gen.scenario(160)
    gen.close()
    expected = chain_event_ids(rpc_url, deployment)
    assert len(expected) > 400

    spans = InMemorySpanExporter()
    add_span_processor(SimpleSpanProcessor(spans), "perpex-indexer-test")
    topic = "perpex.events.backfill." + dep_file.stem
    settings = settings_for(rpc_url, fresh_db, kafka_bootstrap, topic, dep_file)
    status = await index_once(settings)
    assert status["decode_failures"] == {}
    assert status["events"] == len(expected)
    await assert_db_matches_chain(fresh_db, rpc_url, deployment)

    # every liquidation is in the table with its reward; funding rows exist for both markets
    liqs = await db_rows(fresh_db, "SELECT * FROM liquidations")
    assert liqs and all(int(r["reward"]) > 0 for r in liqs)
    funding = await db_rows(fresh_db, "SELECT DISTINCT market_id FROM funding_updates")
    assert len(funding) == 2
    pending = await db_rows(fresh_db, "SELECT count(*) AS n FROM outbox WHERE sent_at IS NULL")
    assert pending[0]["n"] == 0

    msgs = await consume(kafka_bootstrap, topic, lambda m: len(m) >= len(expected))
    assert ids_of(msgs) == expected
    assert not ids_of(msgs, reverted=True)
    # one position's events share a key and arrive in chain order
    by_key: dict[bytes, list[tuple[int, int]]] = {}
    for key, env, headers in msgs:
        assert key == env.key
        assert any(k == "traceparent" for k, _ in headers)
        by_key.setdefault(key, []).append((env.block_number, env.log_index))
    assert all(seq == sorted(seq) for seq in by_key.values())
    # the trace header is the chunk span that wrote the event
    chunk_traces = {
        format(s.context.trace_id, "032x")
        for s in spans.get_finished_spans()
        if s.name == "indexer chunk"
    }
    parents = {dict(h)["traceparent"].decode().split("-")[1] for _, _, h in msgs}
    assert parents <= chunk_traces
    names = {s.name for s in spans.get_finished_spans()}
    assert {"rpc eth_getLogs", "db write_chunk", "kafka produce"} <= names
    # each chunk's transaction is part of that chunk's trace
    writes = {
        format(s.context.trace_id, "032x")
        for s in spans.get_finished_spans()
        if s.name == "db write_chunk"
    }
    assert writes <= chunk_traces
    sample = next(e for _, e, _ in msgs if e.name == "PositionOpened")
    assert sample.market in ("ETH/USDT", "BTC/USDT") and sample.args["collateral"].isdigit()

    # a second run finds nothing new and writes nothing twice
    again = await index_once(settings)
    assert again["events"] == 0
    await assert_db_matches_chain(fresh_db, rpc_url, deployment)
