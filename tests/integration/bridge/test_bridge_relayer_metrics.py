"""`perpex relayer` as a process, scraped on its HEALTH_PORT (/metrics, read with Prometheus' own
text parser): a deposit verified and delivered on the remote->home lane, nothing in flight
after, both chains' nodes up."""

from __future__ import annotations

from bridge_support import BridgeEnv, wait_for
from metrics_scrape import Scrape, scrape_until

WAD = 10**18
DEPOSITS, WITHDRAWALS = "remote->home", "home->remote"


async def test_metrics_from_the_running_relayer(bridged: BridgeEnv) -> None:
    env = bridged
    trader = env.home.eth.accounts[6]
    # /metrics is the OpenTelemetry SDK's: not disabled here (the other tests disable it)
    relayer = env.relayer("relayer-metrics", OTEL_SDK_DISABLED="false")
    try:
        relayer.wait_ready(60)

        def scanned(m: Scrape) -> bool:
            return all(
                m.value("perpex_relayer_blocks_behind", lane=lane) == 0
                for lane in (DEPOSITS, WITHDRAWALS)
            )

        m = await scrape_until(relayer.health_port, scanned, within=30, what="both lanes scanned")
        m.has(
            "perpex_relayer_verified",
            "perpex_relayer_delivered",
            "perpex_relayer_delivery_refused",
            "perpex_relayer_packets_in_flight",
            "perpex_relayer_blocks_behind",
            "perpex_service_ready",
            "perpex_service_alive",
        )
        assert m.value("perpex_service_ready") == 1
        deps = {s.labels["dependency"]: s.value for s in m.samples("perpex_service_dependency_up")}
        assert deps == {"RPC (home)": 1, "RPC (remote)": 1}
        before = m.value("perpex_relayer_delivered_total", lane=DEPOSITS)

        sent = env.bridge.deposit(trader, 30 * WAD)
        wait_for(lambda: env.bridge.credited(sent.guid), 60, "the deposit credited", relayer)

        def delivered(m: Scrape) -> bool:
            return m.value("perpex_relayer_delivered_total", lane=DEPOSITS) == before + 1

        m = await scrape_until(relayer.health_port, delivered, within=30, what="delivery counted")
        assert m.value("perpex_relayer_verified_total", lane=DEPOSITS) >= 1
        assert m.value("perpex_relayer_delivery_refused_total", lane=DEPOSITS) == 0
        assert m.value("perpex_relayer_packets_in_flight", lane=DEPOSITS) == 0
        assert m.value("perpex_relayer_delivered_total", lane=WITHDRAWALS) == 0
    finally:
        assert relayer.stop() == 0, relayer.tail()
