"""`perpex bench graphql`: concurrent clients reading positions pages over /graphql.

1. Starts a private PostgreSQL (perpex_dev.devstack), applies the indexer's migrations to a fresh
   database and bulk-loads --positions synthetic positions with COPY (the indexer's own COPY
   encoder), then ANALYZE.
2. Starts `perpex dashboard --no-feed` on a free port as its own process, as deployed.
3. --clients clients (one asyncio task each, one keep-alive HTTP connection each) loop without
   pause: choose a view (perpex_dev.bench.graphql_data: a filter and an order), read its first
   page with totalCount, then follow the cursor for 1-4 more pages. --warmup seconds are not
   measured, then --duration seconds are.

Details go to stderr; the last stdout line is one JSON object:
{"queries_per_s", "p50_ms", "p99_ms", ...context}.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from perpex_dev.bench import graphql_data as bench_data


def _info(msg: str, *args: Any) -> None:
    print(msg % args if args else msg, file=sys.stderr, flush=True)


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100) of a non-empty list (pure)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(q / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


def _ms(values: list[float], q: float) -> float | None:
    return round(percentile(values, q) * 1000, 2) if values else None


async def load_positions(dsn: str, count: int, owners: int, seed: int) -> None:
    import asyncpg

    from services.indexer.copy_text import positions_copy
    from services.indexer.store import MIGRATIONS_DIR
    from shared.db import apply_migrations
    from shared.readmodel.tables import POSITION_COLUMNS

    owner_list = bench_data.owners(owners, seed)
    conn = await asyncpg.connect(dsn)
    try:
        await apply_migrations(conn, MIGRATIONS_DIR)
        await conn.executemany(
            "INSERT INTO markets (market_id, pair) VALUES ($1, $2)",
            [(bench_data.market_id_hex(p), p) for p in bench_data.PAIRS],
        )
        rows = bench_data.positions(count, owner_list, seed)
        while batch := [r for _, r in zip(range(20_000), rows, strict=False)]:
            await conn.copy_to_table(
                "positions",
                source=memoryview(positions_copy(batch)),
                columns=POSITION_COLUMNS,
                format="text",
            )
        await conn.execute(
            "INSERT INTO sync_status (contract_address, last_synced_block, last_synced_hash) "
            "VALUES ($1, $2, '0x00')",
            "0x" + "5f" * 20,
            count + 3,
        )
        await conn.execute("ANALYZE")
    finally:
        await conn.close()


async def indexer_commits(
    dsn: str, first_token: int, owner_list: list[str], interval: float, stop_at: float
) -> int:
    """What a live indexer does to the tables meanwhile: every `interval` seconds one
    transaction opens 10 positions, closes up to 10 open ones and moves sync_status (so
    cached totals are recounted, as after a real commit). Returns the commits made."""
    import asyncpg

    from services.indexer.copy_text import positions_copy
    from shared.readmodel.tables import POSITION_COLUMNS

    conn = await asyncpg.connect(dsn)
    commits, token = 0, first_token
    try:
        while time.perf_counter() + interval < stop_at:
            await asyncio.sleep(interval)
            rows = list(bench_data.positions(10, owner_list, seed=token, first_token=token))
            token += len(rows)
            async with conn.transaction():
                await conn.copy_to_table(
                    "positions",
                    source=memoryview(positions_copy(rows)),
                    columns=POSITION_COLUMNS,
                    format="text",
                )
                await conn.execute(
                    """UPDATE positions SET status = 'closed', closed_block = $1,
                           closed_timestamp = opened_timestamp + 600, updated_block = $1
                       WHERE token_id IN (SELECT token_id FROM positions WHERE status = 'open'
                                          AND token_id > $2 ORDER BY token_id LIMIT 10)""",
                    token + 3,
                    token - 5000,
                )
                await conn.execute(
                    "UPDATE sync_status SET last_synced_block = $1, updated_at = now()", token + 3
                )
            commits += 1
    finally:
        await conn.close()
    return commits


async def client(
    url: str,
    page_size: int,
    owner_list: list[str],
    seed: int,
    stop_at: float,
    measure_from: float,
    think: float,
) -> tuple[list[tuple[float, bool]], int]:
    import aiohttp

    rng = random.Random(seed)
    latencies: list[tuple[float, bool]] = []  # (seconds, first page of a view: with a total)
    errors = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=1)) as session:
        while time.perf_counter() < stop_at:
            view = bench_data.random_view(rng, owner_list)
            after: str | None = None
            for _ in range(rng.randint(2, 5)):
                body = {
                    "query": bench_data.QUERY,
                    "variables": bench_data.variables(view, page_size, after),
                }
                t0 = time.perf_counter()
                async with session.post(url, json=body) as resp:
                    data = await resp.json()
                t1 = time.perf_counter()
                if resp.status != 200 or data.get("errors"):
                    errors += 1
                    if errors == 1:
                        _info("first error: %s %s", resp.status, str(data)[:500])
                    break
                if t0 >= measure_from and t1 <= stop_at:
                    latencies.append((t1 - t0, after is None))
                page = data["data"]["positions"]["pageInfo"]
                if not page["hasNextPage"] or t1 >= stop_at:
                    break
                after = page["endCursor"]
                if think:
                    await asyncio.sleep(rng.uniform(0.5, 1.5) * think)
            if think:
                await asyncio.sleep(rng.uniform(0.5, 1.5) * think)
    return latencies, errors


def start_dashboard(dsn: str, port: int, log_path: Path, pool_size: int) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    env.update(
        DB_URI=dsn,
        DASHBOARD_HOST="127.0.0.1",
        DASHBOARD_PORT=str(port),
        HEALTH_PORT="0",
        DASHBOARD_GRAPHQL_POOL_SIZE=str(pool_size),
        LOG_LEVEL="WARNING",
    )
    with open(log_path, "ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "perpex_cli.main", "dashboard", "--no-feed"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )


async def wait_ready(url: str, proc: subprocess.Popen[bytes], within: float = 60) -> None:
    import aiohttp

    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise click.ClickException(f"the dashboard exited with {proc.returncode}")
            try:
                async with session.post(
                    url, json={"query": "{ syncStatus { indexedBlock } }"}
                ) as r:
                    if r.status == 200 and not (await r.json()).get("errors"):
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise click.ClickException("the dashboard did not answer /graphql in time")


async def measure(
    url: str,
    dsn: str,
    positions: int,
    opts: Options,
    owner_list: list[str],
) -> tuple[list[tuple[float, bool]], int, int]:
    start = time.perf_counter()
    measure_from = start + opts.warmup
    stop_at = measure_from + opts.duration
    writer = asyncio.create_task(
        indexer_commits(dsn, positions + 1, owner_list, opts.commit_interval, stop_at)
        if opts.commit_interval
        else asyncio.sleep(0, 0)
    )
    results = await asyncio.gather(
        *(
            client(url, opts.page_size, owner_list, i, stop_at, measure_from, opts.think_ms / 1000)
            for i in range(opts.clients)
        )
    )
    latencies = [x for lat, _ in results for x in lat]
    return latencies, sum(e for _, e in results), await writer


@dataclass(frozen=True)
class Options:
    positions: int = 100_000
    clients: int = 50
    duration: float = 20.0
    warmup: float = 3.0
    page_size: int = 50
    pool_size: int = 10
    think_ms: float = 0.0
    commit_interval: float = 1.0


async def _status(url: str) -> dict[str, Any] | None:
    import aiohttp

    try:
        async with aiohttp.ClientSession() as session, session.get(url) as resp:
            return await resp.json()  # type: ignore[no-any-return]
    except (aiohttp.ClientError, ValueError):
        return None


def run_bench(opts: Options) -> dict[str, Any]:
    import psutil

    from perpex_dev.devstack.ephemeral import ephemeral_stack
    from perpex_dev.devstack.ports import free_port

    owners = max(10, opts.positions // 50)
    owner_list = bench_data.owners(owners, 1)
    with ephemeral_stack(("postgres",)) as stack, tempfile.TemporaryDirectory() as tmp:
        dsn = stack.postgres.url
        t0 = time.perf_counter()
        asyncio.run(load_positions(dsn, opts.positions, owners, seed=1))
        _info("%d positions loaded (COPY) in %.1fs", opts.positions, time.perf_counter() - t0)
        port = free_port()
        url = f"http://127.0.0.1:{port}/graphql"
        proc = start_dashboard(dsn, port, Path(tmp) / "dashboard.log", opts.pool_size)
        try:
            asyncio.run(wait_ready(url, proc))
            server = psutil.Process(proc.pid)
            cpu0 = server.cpu_times()
            latencies, errors, commits = asyncio.run(
                measure(url, dsn, opts.positions, opts, owner_list)
            )
            cpu1 = server.cpu_times()
            status = asyncio.run(_status(url.replace("/graphql", "/api/status")))
        finally:
            proc.terminate()
            proc.wait(30)
    if not latencies:
        raise click.ClickException(f"no query completed ({errors} errors)")
    firsts = [t for t, first in latencies if first]
    nexts = [t for t, first in latencies if not first]
    all_ = [t for t, _ in latencies]
    busy = (cpu1.user + cpu1.system - cpu0.user - cpu0.system) / (opts.duration + opts.warmup)
    return {
        "queries_per_s": round(len(all_) / opts.duration, 1),
        "p50_ms": _ms(all_, 50),
        "p99_ms": _ms(all_, 99),
        "p90_ms": _ms(all_, 90),
        "max_ms": _ms(all_, 100),
        "p99_first_page_ms": _ms(firsts, 99),
        "p99_next_page_ms": _ms(nexts, 99),
        "queries": len(all_),
        "errors": errors,
        "clients": opts.clients,
        "think_ms": opts.think_ms,
        "positions": opts.positions,
        "page_size": opts.page_size,
        "duration_s": opts.duration,
        "indexer_commits": commits,
        "dashboard_cpu_cores": round(busy, 2),
        "cpu_count": os.cpu_count(),
        "load_avg_1m": round(os.getloadavg()[0], 2),
        "cache": (status or {}).get("graphql"),
    }


@click.command("graphql")
@click.option("--positions", default=100_000, show_default=True, type=click.IntRange(1, 10**7))
@click.option("--clients", default=50, show_default=True, type=click.IntRange(1, 10_000))
@click.option("--duration", default=20.0, show_default=True, type=click.FloatRange(0.5, 3600))
@click.option("--warmup", default=3.0, show_default=True, type=click.FloatRange(0, 600))
@click.option("--page-size", default=50, show_default=True, type=click.IntRange(1, 500))
@click.option(
    "--pool-size",
    default=10,
    show_default=True,
    type=click.IntRange(1, 100),
    help="the dashboard's GraphQL connections (DASHBOARD_GRAPHQL_POOL_SIZE)",
)
@click.option(
    "--think-ms",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 60_000),
    help="a client's pause between an answer and its next request (0: none, saturating)",
)
@click.option(
    "--commit-interval", default=1.0, show_default=True, type=click.FloatRange(0, 3600),
    help="seconds between simulated indexer commits during the run (0: a static table)",
)  # fmt: skip
def bench(**kwargs: Any) -> None:
    """Positions pages over /graphql: throughput and latency percentiles."""
    result = run_bench(Options(**kwargs))
    _info(
        "%d clients: %.0f queries/s, p50 %.1f ms, p99 %.1f ms",
        result["clients"],
        result["queries_per_s"],
        result["p50_ms"],
        result["p99_ms"],
    )
    click.echo(json.dumps(result))
