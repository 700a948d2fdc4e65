"""Two updaters against a real anvil (time moved with evm_increaseTime): exactly one
FundingRateUpdated per window per market, through leader fail-over, with the leader elected by
a PostgreSQL advisory lock or by a Kubernetes Lease (kmock's API emulator over HTTP)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import Any

import asyncpg
import kmock as km
from funding_support import H8, Chain, funding_settings, lease_object, running, wait_for

from perpex_dev.devstack.stack import LocalStack
from services.funding.leader import PostgresAdvisoryLeader
from services.funding.schedule import window_index
from services.funding.updater import FundingUpdater


async def _window_done(funded: Chain, before: dict[str, int]) -> None:
    """Wait until every market's lastFundingTime moved past `before`."""
    await wait_for(
        lambda: all(funded.last(p) > before[p] for p in funded.pairs), "funding updates", 30
    )


async def _one_window(funded: Chain) -> None:
    before = {p: funded.last(p) for p in funded.pairs}
    funded.open_next_window()
    await _window_done(funded, before)
    await asyncio.sleep(1.0)  # room for a duplicate to show up, were there one


def _sent(*updaters: FundingUpdater) -> int:
    return sum(s.sent for u in updaters for s in u.markets.values())


async def test_exactly_one_update_per_window_postgres_leader(
    funded: Chain, deployment_file: Path, rpc_url: str, fresh_db: str
) -> None:
    await _two_updaters(funded, deployment_file, rpc_url, fresh_db, None)


async def test_exactly_one_update_per_window_kubernetes_lease(
    funded: Chain, deployment_file: Path, rpc_url: str, fresh_db: str, kube: km.KubernetesEmulator
) -> None:
    await _two_updaters(funded, deployment_file, rpc_url, fresh_db, kube)


async def _two_updaters(
    funded: Chain,
    deployment_file: Path,
    rpc_url: str,
    fresh_db: str,
    kube: km.KubernetesEmulator | None,
) -> None:
    election = "postgres" if kube is None else "kubernetes"
    extra: dict[str, Any] = {"leader_election": election, "db_uri": fresh_db}
    if kube is not None:
        extra.update(
            kube_api_url=str(kube.url),
            lease_namespace="markets",
            lease_duration_s=3,
            lease_renew_deadline_s=2,
            leader_retry_s=0.3,
        )

    def settings(name: str) -> Any:
        return funding_settings(rpc_url, deployment_file, pod_name=name, **extra)

    anchors = {p: funded.last(p) for p in funded.pairs}
    nonce0 = funded.wallet_nonce()

    async with running(settings("updater-a")) as a:
        await wait_for(lambda: a.leader.is_leader, "a to lead")
        async with running(settings("updater-b")) as b:
            await wait_for(lambda: b.ready, "b to read the chain")
            assert not b.leader.is_leader
            await _one_window(funded)  # window 1: a leads
            assert _sent(a) == 2 and _sent(b) == 0
            if kube is not None:
                lease = lease_object(kube, "markets", a.leader.name)
                assert lease is not None and lease["spec"]["holderIdentity"] == "updater-a"
            # a leaves (graceful: it releases the lock / empties the lease) ...
            await a_stop(a)
            await wait_for(lambda: b.leader.is_leader, "b to take over", 15)
            await _one_window(funded)  # window 2: b leads
            assert _sent(b) == 2
            # ... and a fresh replica joins as a standby while b keeps leading
            async with running(settings("updater-c")) as c:
                await wait_for(lambda: c.ready, "c to read the chain")
                await _one_window(funded)  # window 3
                assert not c.leader.is_leader and _sent(c) == 0
            assert _sent(b) == 4

    for pair in funded.pairs:
        updates = funded.updates(pair)
        cells = Counter(window_index(u["timestamp"], anchors[pair], H8) for u in updates)
        assert cells == {1: 1, 2: 1, 3: 1}, (pair, updates)
    # six transactions, all successful: nothing sent twice, no gas burnt on a revert
    assert funded.wallet_nonce() - nonce0 == 6
    assert funded.wallet_receipts_ok() == [1] * 6


async def a_stop(updater: FundingUpdater) -> None:
    updater.stop()
    await wait_for(lambda: not updater.running, "a to stop", 30)


async def test_lost_lock_connection_is_lost_leadership(stack: LocalStack, fresh_db: str) -> None:
    """The advisory lock lives in one database session: when that session dies the replica
    stops leading at once; then one replica (never two) holds the lock again."""
    a = PostgresAdvisoryLeader(fresh_db, "perpex-funding-test", retry_s=0.2)
    b = PostgresAdvisoryLeader(fresh_db, "perpex-funding-test", retry_s=0.2)
    changes: list[bool] = []
    a.add_listener(changes.append)
    try:
        await a.start()
        await wait_for(lambda: a.is_leader, "a to lead")
        await b.start()
        await asyncio.sleep(0.6)
        assert not b.is_leader
        assert a._conn is not None
        pid = a._conn.get_server_pid()
        admin = await asyncpg.connect(stack.postgres.admin_url)
        try:
            await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
        finally:
            await admin.close()
        await wait_for(lambda: not a.is_leader, "a to notice", 5)
        assert changes[:2] == [True, False]
        # Both campaign again; whoever wins, there is exactly one leader from then on.
        await wait_for(lambda: a.is_leader or b.is_leader, "a new leader", 5)
        for _ in range(20):
            assert a.is_leader != b.is_leader
            await asyncio.sleep(0.05)
        leader, standby = (a, b) if a.is_leader else (b, a)
        assert await leader.confirm() and not await standby.confirm()
        # The leader leaves: the standby takes over.
        await leader.stop()
        await wait_for(lambda: standby.is_leader, "the standby to take the lock", 5)
    finally:
        await a.stop()
        await b.stop()
