"""`perpex demo`: the whole Perp-EX stack on embedded local components, playing a market.

1. starts anvil, a second anvil (chain id 31338, the bridge's remote chain), a private
   PostgreSQL and the Kafka-protocol broker on free 127.0.0.1 ports
2. deploys the contracts for ETH/USDT and BTC/USDT, and the cross-chain bridge between the two
   chains (LayerZero EndpointV2 + SimpleMessageLib on each)
3. starts the indexer (following the bridge on both chains too), keeper, funding updater,
   relayer and dashboard as their own processes, exporting traces over OTLP to a small
   in-process receiver
4. a trader deposits on the remote chain, trades on the home chain with the credit and
   withdraws back; the relayer carries both messages
5. traders open longs and shorts, some close; the ETH oracle price crashes; the keeper
   liquidates; chain time advances past 8 hours; the funding updater updates both markets
6. prints a summary (its last line one JSON object), then keeps the dashboard up until Ctrl-C
   (`--exit` stops after the summary)
"""

from __future__ import annotations

import asyncio
import json
import random
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import asyncpg
import click
from eth_account import Account
from web3 import Web3

from perpex_cli.services import ServiceProcess
from perpex_dev.devstack.accounts import ANVIL_KEYS, DEPLOYER, FUNDING, KEEPER, RELAYER, TRADERS
from perpex_dev.devstack.bridge import LocalBridge
from perpex_dev.devstack.components import StackConfig
from perpex_dev.devstack.market import WAD, LocalMarket, OpenedPosition
from perpex_dev.devstack.paths import REPO_ROOT
from perpex_dev.devstack.ports import free_ports
from perpex_dev.devstack.stack import LocalStack
from perpex_dev.otlp_sink import OtlpSink, start_sink_thread
from shared.chain.deploy import deploy_bridge, deploy_local

FUNDING_INTERVAL = 8 * 3600


@dataclass
class Summary:
    opened: int
    closed: int
    liquidated: int
    funding_updates: int
    bridge_transfers: int  # deposits and withdrawals delivered across the two chains
    trace_id: str | None

    def as_json(self) -> str:
        return json.dumps(self.__dict__)


def step(n: int, total: int, text: str) -> None:
    click.secho(f"[{n}/{total}] {text}", fg="cyan", bold=True)


def info(text: str) -> None:
    click.echo(f"      {text}")


@click.command("demo")
@click.option("--exit", "exit_after", is_flag=True, help="stop after the summary, exit 0")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=REPO_ROOT / ".perpex" / "demo",
    show_default=True,
)
@click.option("--dashboard-port", type=int, default=8000, show_default=True)
@click.option(
    "--timeout",
    type=float,
    default=180.0,
    show_default=True,
    help="seconds to wait for liquidations / funding before giving up",
)
@click.option("--seed", type=int, default=7, show_default=True)
def demo(exit_after: bool, data_dir: Path, dashboard_port: int, timeout: float, seed: int) -> None:
    """Run the whole stack locally and play a market through it."""
    summary = run_demo(data_dir.absolute(), dashboard_port, timeout, seed, exit_after)
    click.echo(summary.as_json())
    ok = summary.liquidated > 0 and summary.funding_updates > 0 and summary.bridge_transfers == 2
    raise SystemExit(0 if ok else 1)


def run_demo(
    data_dir: Path, dashboard_port: int, timeout: float, seed: int, exit_after: bool
) -> Summary:
    total = 8
    rng = random.Random(seed)
    anvil_port, pg_port, kafka_port, remote_port, otlp_port, *health = free_ports(10)
    stack = LocalStack(
        StackConfig(
            data_dir=data_dir / "stack",
            anvil_port=anvil_port,
            postgres_port=pg_port,
            kafka_port=kafka_port,
            durable=False,
            remote_anvil_port=remote_port,
        )
    )
    services: list[ServiceProcess] = []
    sink = OtlpSink()
    stop_sink = start_sink_thread(sink, otlp_port)
    try:
        step(1, total, "starting anvil (two chains), PostgreSQL and the Kafka-protocol broker")
        for comp in stack.components:
            comp.stop()  # a previous demo run that was killed
        # every run starts fresh chains, so nothing a previous run stored still holds: its
        # database would describe another chain (and follow other contracts)
        shutil.rmtree(data_dir / "stack", ignore_errors=True)
        (data_dir / "relayer-state.json").unlink(missing_ok=True)
        stack.up()
        for comp, health_ in stack.status():
            info(f"{comp.name:12} {comp.url}  {health_.detail}")

        step(2, total, "deploying contracts (ETH/USDT, BTC/USDT) and the cross-chain bridge")
        deployment_path = data_dir / "deployment.json"
        deployment = deploy_local(
            stack.anvil.url,
            ANVIL_KEYS[DEPLOYER],
            deployment_path,
            funding_interval=FUNDING_INTERVAL,
        )
        info(f"PositionManager {deployment.contracts.position_manager}")
        deployment = deploy_bridge(
            stack.anvil.url,
            stack.remote_anvil.url,
            ANVIL_KEYS[DEPLOYER],
            deployment_path,
            relayer=Account.from_key(ANVIL_KEYS[RELAYER]).address,
        )
        assert deployment.bridge is not None
        b = deployment.bridge
        info(f"CollateralBridge    {b.home.app} (chain {b.home.chain_id})")
        info(f"CollateralDepositor {b.remote.app} (chain {b.remote.chain_id})")
        info(f"deployment file {deployment_path}")

        step(3, total, "starting indexer, keeper, funding updater, relayer and dashboard")
        env = {
            **stack.env(),
            "DEPLOYMENT_FILE": str(deployment_path),
            "KEEPER_PRIVATE_KEY": ANVIL_KEYS[KEEPER],
            "FUNDING_PRIVATE_KEY": ANVIL_KEYS[FUNDING],
            "RELAYER_PRIVATE_KEY": ANVIL_KEYS[RELAYER],
            "RELAYER_STATE_FILE": str(data_dir / "relayer-state.json"),
            "POLL_INTERVAL_MS": "250",
            "LEADER_ELECTION": "postgres",
            "DASHBOARD_PORT": str(dashboard_port),
            "DASHBOARD_RPC_HEAD": "true",  # GraphQL's syncStatus shows the head and the lag
            "OTEL_EXPORTER_OTLP_ENDPOINT": f"http://127.0.0.1:{otlp_port}",
            "OTEL_BSP_SCHEDULE_DELAY": "300",
            "OTEL_METRIC_EXPORT_INTERVAL": "5000",
            "LOG_LEVEL": "INFO",
        }
        logs = data_dir / "logs"
        for (name, argv), port in zip(
            [
                ("indexer", ["indexer"]),
                ("keeper", ["keeper"]),
                ("funding", ["funding", "run"]),
                ("relayer", ["relayer"]),
                ("dashboard", ["dashboard"]),
            ],
            health,
            strict=False,
        ):
            svc = ServiceProcess(
                name,
                argv,
                {**env, "OTEL_SERVICE_NAME": f"perpex-{name}"},
                logs / f"{name}.log",
                port,
            )
            svc.start()
            services.append(svc)
        for svc in services:
            svc.wait_ready(90)
            info(f"{svc.name:9} ready (log {svc.log_path})")
        info(f"dashboard http://127.0.0.1:{dashboard_port}/")
        info(
            f"GraphQL   http://127.0.0.1:{dashboard_port}/graphql "
            f"(subscriptions: ws://127.0.0.1:{dashboard_port}/graphql; docs/graphql.md)"
        )

        w3 = Web3(Web3.HTTPProvider(stack.anvil.url, request_kwargs={"timeout": 60}))
        market = LocalMarket(w3, deployment)
        remote = Web3(Web3.HTTPProvider(stack.remote_anvil.url, request_kwargs={"timeout": 60}))
        bridge = LocalBridge(w3, remote, deployment)

        step(4, total, "cross-chain: deposit on chain 31338, trade on 31337, withdraw back")
        _bridge_round_trip(w3, market, bridge, env["DB_URI"], timeout)

        step(5, total, "traders open longs and shorts; some close")
        opened = _play_trades(w3, market, rng)
        closed = [p for p in opened if p.leverage <= 3 * WAD][:2]
        for p in closed:
            market.close(p.owner, p.token_id, p.is_long)
            info(f"closed #{p.token_id} {p.pair} {'long' if p.is_long else 'short'}")

        step(6, total, "ETH/USDT oracle price crashes 15%; the keeper liquidates")
        eth_price = market.price("ETH/USDT")
        market.set_price("ETH/USDT", eth_price * 85 // 100)
        info(f"ETH/USDT {eth_price / 1e8:.2f} -> {eth_price * 85 // 100 / 1e8:.2f}")
        open_ids = [p.token_id for p in opened if p not in closed]
        underwater = [t for t in open_ids if market.is_liquidatable(t)]
        info(f"{len(underwater)} positions are now below maintenance margin")
        asyncio.run(
            _wait_rows(
                env["DB_URI"],
                "SELECT count(*) FROM liquidations",
                len(underwater),
                timeout,
                "liquidations",
            )
        )
        still = [t for t in underwater if market.exists(t)]
        info(f"keeper liquidated {len(underwater) - len(still)}/{len(underwater)}")

        step(7, total, "chain time advances 8 hours; funding updates both markets")
        market.advance_time(FUNDING_INTERVAL + 1)
        market.refresh_prices()
        asyncio.run(
            _wait_rows(
                env["DB_URI"],
                "SELECT count(DISTINCT market_id) FROM funding_updates",
                len(deployment.pairs),
                timeout,
                "funding updates",
            )
        )
        for line in asyncio.run(_funding_lines(env["DB_URI"])):
            info(line)

        step(8, total, "summary")
        summary = asyncio.run(_summary(env["DB_URI"], sink))
        info(
            f"positions opened {summary.opened}, closed {summary.closed}, "
            f"liquidated {summary.liquidated}; funding updates {summary.funding_updates}; "
            f"bridge transfers delivered {summary.bridge_transfers}"
        )
        if summary.trace_id:
            info(f"trace {summary.trace_id} links a chain event to its liquidation receipt:")
            for span in sink.trace(summary.trace_id):
                info(f"  {span.service:16} {span.name}")
        if not exit_after:
            click.echo(summary.as_json())
            click.secho(
                f"dashboard: http://127.0.0.1:{dashboard_port}/  GraphQL: "
                f"http://127.0.0.1:{dashboard_port}/graphql  (Ctrl-C to stop)",
                bold=True,
            )
            try:
                while all(s.running() for s in services):
                    time.sleep(1)
            except KeyboardInterrupt:
                pass
        return summary
    finally:
        for svc in reversed(services):
            code = svc.stop()
            if code not in (0, None):
                click.echo(
                    f"      {svc.name} exited with {code}; log tail:\n{svc.tail(15)}", err=True
                )
        stack.down()
        stop_sink()


def _bridge_round_trip(
    w3: Web3, market: LocalMarket, bridge: LocalBridge, dsn: str, wait_s: float
) -> None:
    """A trader with collateral on the remote chain only: deposit it over the bridge, trade with
    it on the home chain, take it back. The relayer delivers each message (verify, then
    lzReceive); the indexer follows both chains, so the dashboard shows the deposit in flight."""
    trader = w3.eth.accounts[TRADERS[-1]]
    amount = 5_000 * WAD
    started = time.monotonic()
    sent = bridge.deposit(trader, amount)
    info(
        f"locked {amount // WAD} vUSDT on chain 31338 (guid {sent.guid[:18]}…, nonce {sent.nonce})"
    )
    _wait(lambda: bridge.credited(sent.guid), wait_s, "the deposit's credit on the home chain")
    free = bridge.free_collateral(trader)
    info(
        f"credited on chain 31337 after {time.monotonic() - started:.1f}s: free collateral {free // WAD}"
    )
    pos = market.open(trader, "BTC/USDT", True, 1_000 * WAD, 2 * WAD)
    market.close(trader, pos.token_id, True)
    free = bridge.free_collateral(trader)
    info(f"opened and closed #{pos.token_id} BTC/USDT 2x: free collateral {free / WAD:.2f}")
    before = bridge.remote_balance(trader)
    back = free // WAD * WAD
    started = time.monotonic()
    sent = bridge.withdraw(trader, back)
    info(f"withdrew {back // WAD} vUSDT to chain 31338 (nonce {sent.nonce})")
    _wait(lambda: bridge.released(sent.guid), wait_s, "the withdrawal's release on chain 31338")
    got = bridge.remote_balance(trader) - before
    info(f"released on chain 31338 after {time.monotonic() - started:.1f}s: {got // WAD} vUSDT")
    asyncio.run(
        _wait_rows(
            dsn,
            "SELECT count(*) FROM bridge_transfers WHERE status = 'delivered'",
            2,
            wait_s,
            "bridge transfers indexed on both chains",
        )
    )


def _wait(cond: Callable[[], bool], wait_s: float, what: str) -> None:
    deadline = time.monotonic() + wait_s
    while not cond():
        if time.monotonic() > deadline:
            raise click.ClickException(f"timed out waiting for {what}")
        time.sleep(0.1)


def _play_trades(w3: Web3, market: LocalMarket, rng: random.Random) -> list[OpenedPosition]:
    traders = [w3.eth.accounts[i] for i in TRADERS]
    opened: list[OpenedPosition] = []
    for trader in traders:
        market.fund(trader, 100_000 * WAD)
    plan = [
        ("ETH/USDT", True, 10),
        ("ETH/USDT", True, 8),
        ("ETH/USDT", False, 5),
        ("BTC/USDT", True, 3),
        ("BTC/USDT", False, 4),
        ("ETH/USDT", True, 2),
        ("BTC/USDT", True, 2),
        ("ETH/USDT", False, 3),
    ]
    for i, (pair, is_long, lev) in enumerate(plan * 2):
        trader = traders[i % len(traders)]
        collateral = rng.randrange(500, 3000) * WAD
        pos = market.open(trader, pair, is_long, collateral, lev * WAD)
        opened.append(pos)
        info(
            f"#{pos.token_id:<3} {pair} {'long ' if is_long else 'short'} {lev:>2}x "
            f"collateral {collateral // WAD} vUSDT  by {trader[:10]}"
        )
    return opened


async def _wait_rows(dsn: str, query: str, want: int, wait_s: float, what: str) -> int:
    deadline = time.monotonic() + wait_s
    conn = await asyncpg.connect(dsn)
    try:
        got = 0
        while time.monotonic() < deadline:
            got = int(await conn.fetchval(query))
            if got >= want:
                info(f"{what}: {got}")
                return got
            await asyncio.sleep(0.5)
        raise click.ClickException(f"timed out waiting for {what}: {got} of {want}")
    finally:
        await conn.close()


async def _funding_lines(dsn: str) -> list[str]:
    """The rate each market's update set, and what it means per second (zero-sum: paid by one
    side to the other, from now on)."""
    conn = await asyncpg.connect(dsn)
    try:
        rows = await conn.fetch(
            """SELECT DISTINCT ON (f.market_id) m.pair, f.funding_rate, f.funding_per_second
               FROM funding_updates f JOIN markets m USING (market_id)
               ORDER BY f.market_id, f.block_number DESC, f.log_index DESC"""
        )
    finally:
        await conn.close()
    out = []
    for r in rows:
        rate = int(r["funding_rate"]) / WAD * 100
        payer = "longs pay shorts" if int(r["funding_rate"]) > 0 else "shorts pay longs"
        out.append(
            f"{r['pair']}: rate {rate:+.4f}% / 8h ({payer}), accruing every second "
            f"({int(r['funding_per_second']) / WAD:.3e} vUSDT per unit per second)"
        )
    return out


async def _summary(dsn: str, sink: OtlpSink) -> Summary:
    conn = await asyncpg.connect(dsn)
    try:
        counts = dict(await conn.fetch("SELECT status, count(*) FROM positions GROUP BY status"))
        funding = int(await conn.fetchval("SELECT count(*) FROM funding_updates"))
        bridged = int(
            await conn.fetchval("SELECT count(*) FROM bridge_transfers WHERE status = 'delivered'")
        )
    finally:
        await conn.close()
    trace_id = None
    deadline = time.monotonic() + 15
    while trace_id is None and time.monotonic() < deadline:
        linked = sink.traces_with("perpex-indexer", "perpex-keeper")
        trace_id = next(
            (tid for tid, spans in linked.items() if any("liquidat" in s.name for s in spans)), None
        )
        if trace_id is None:
            await asyncio.sleep(0.5)
    return Summary(
        opened=sum(int(v) for v in counts.values()),
        closed=int(counts.get("closed", 0)),
        liquidated=int(counts.get("liquidated", 0)),
        funding_updates=funding,
        bridge_transfers=bridged,
        trace_id=trace_id,
    )
