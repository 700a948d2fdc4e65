"""Kubernetes Lease election: the pure decision, and the elector against an in-memory lease
store that behaves like the API server on writes (resourceVersion preconditions -> 409)."""

from __future__ import annotations

import copy
import datetime as dt
from typing import Any

import pytest

from services.funding import lease as lz
from services.funding.leader import KubernetesLeaseLeader, LeaseConflict, advisory_key

T0 = dt.datetime(2026, 11, 24, 8, 0, 0, tzinfo=dt.UTC)


def record(
    holder: str | None, rv: str = "1", duration: int = 15, transitions: int = 0
) -> lz.LeaseRecord:
    return lz.LeaseRecord(holder, duration, None, "t", transitions, rv)


def test_election_names() -> None:
    assert lz.election_name(["ETH/USDT"]) == "perpex-funding-eth-usdt"
    assert lz.election_name(["BTC/USDT", "ETH/USDT"]) == lz.election_name(["ETH/USDT", "BTC/USDT"])
    assert lz.election_name([]) == "perpex-funding-all"
    long = lz.election_name([f"TOKEN{i}/USDT" for i in range(20)])
    assert len(long) <= 63 and long.startswith("perpex-funding-")
    assert long != lz.election_name([f"TOKEN{i}/USDT" for i in range(21)])


def test_plan() -> None:
    assert lz.plan(None, "a", 0, 0).step is lz.Step.CREATE
    assert lz.plan(record("a"), "a", 0, 100).step is lz.Step.RENEW
    assert lz.plan(record(None), "a", 0, 0).step is lz.Step.TAKE_OVER
    held = lz.plan(record("b"), "a", observed_at=10.0, now=20.0)
    assert held.step is lz.Step.WAIT and held.wait_s == 5.0
    assert lz.plan(record("b"), "a", observed_at=10.0, now=25.0).step is lz.Step.TAKE_OVER


def test_observer_counts_from_the_last_change_not_the_remote_clock() -> None:
    obs = lz.Observer()
    assert obs.observe(record("b", rv="1"), 100.0) == 100.0
    assert obs.observe(record("b", rv="1"), 110.0) == 100.0  # unchanged: still 100
    assert obs.observe(record("b", rv="2"), 112.0) == 112.0  # b renewed


def test_still_leading() -> None:
    assert not lz.still_leading(None, 10, 0)
    assert lz.still_leading(100.0, 10, 109.9)
    assert not lz.still_leading(100.0, 10, 110.0)


def test_bodies() -> None:
    body = lz.new_lease("perpex-funding-eth-usdt", "markets", "pod-a", 15, T0)
    assert body["apiVersion"] == "coordination.k8s.io/v1" and body["kind"] == "Lease"
    assert body["spec"]["holderIdentity"] == "pod-a"
    assert body["spec"]["renewTime"] == "2026-11-24T08:00:00.000000Z"
    rec = lz.LeaseRecord.from_object(
        {**body, "metadata": {**body["metadata"], "resourceVersion": "7"}}
    )
    assert rec.holder == "pod-a" and rec.resource_version == "7" and rec.duration_s == 15
    assert lz.renew_patch(rec, 15, T0)["metadata"] == {"resourceVersion": "7"}
    take = lz.take_over_patch(rec, "pod-b", 15, T0)
    assert take["spec"]["holderIdentity"] == "pod-b" and take["spec"]["leaseTransitions"] == 1
    release = lz.release_patch(rec, T0)
    assert release["spec"]["holderIdentity"] == "" and release["spec"]["leaseDurationSeconds"] == 1
    assert (
        lz.LeaseRecord.from_object({"spec": {"holderIdentity": ""}, "metadata": {}}).holder is None
    )


def test_advisory_key_is_stable_and_signed_64_bit() -> None:
    key = advisory_key("perpex-funding-eth-usdt")
    assert key == advisory_key("perpex-funding-eth-usdt")
    assert key != advisory_key("perpex-funding-btc-usdt")
    assert -(2**63) <= key < 2**63


# ---------------------------------------------------------------- the elector


class FakeApiServer:
    """Leases in memory with the API server's optimistic concurrency: every write bumps
    resourceVersion; a write carrying another resourceVersion fails with 409."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.version = 0
        self.down = False

    def client(self) -> Client:
        return Client(self)

    def _bump(self, obj: dict[str, Any]) -> dict[str, Any]:
        self.version += 1
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.version)
        return copy.deepcopy(obj)


class Client:
    def __init__(self, server: FakeApiServer):
        self.server = server

    def _check(self) -> None:
        if self.server.down:
            raise ConnectionError("API server unreachable")

    async def get(self, namespace: str, name: str) -> dict[str, Any] | None:
        self._check()
        obj = self.server.objects.get((namespace, name))
        return copy.deepcopy(obj) if obj else None

    async def create(self, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        key = (namespace, body["metadata"]["name"])
        if key in self.server.objects:
            raise LeaseConflict("AlreadyExists")
        self.server.objects[key] = copy.deepcopy(body)
        return self.server._bump(self.server.objects[key])

    async def patch(self, namespace: str, name: str, body: dict[str, Any]) -> dict[str, Any]:
        self._check()
        obj = self.server.objects[(namespace, name)]
        want = (body.get("metadata") or {}).get("resourceVersion")
        if want is not None and want != obj["metadata"]["resourceVersion"]:
            raise LeaseConflict("Conflict")
        obj["spec"].update(body.get("spec") or {})
        return self.server._bump(obj)

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def _leader(server: FakeApiServer, identity: str, clock: Clock) -> KubernetesLeaseLeader:
    return KubernetesLeaseLeader(
        server.client(),
        "markets",
        "perpex-funding-eth-usdt",
        identity,
        duration_s=15,
        renew_deadline_s=10,
        retry_s=2,
        clock=clock,
        wall=lambda: T0,
    )


async def test_one_leader_renewal_and_takeover_after_expiry() -> None:
    server, clock = FakeApiServer(), Clock()
    a, b = _leader(server, "pod-a", clock), _leader(server, "pod-b", clock)
    await a._step()
    await b._step()
    assert a.is_leader and not b.is_leader
    lease = server.objects[("markets", "perpex-funding-eth-usdt")]
    assert lease["spec"]["holderIdentity"] == "pod-a"
    # a keeps renewing: b never takes over
    for _ in range(10):
        clock.t += 2
        await a._step()
        await b._step()
        assert a.is_leader and not b.is_leader
    # a stops renewing (crashed): b waits a full lease duration from its last observation
    clock.t += 14
    await b._step()
    assert not b.is_leader
    assert not a.is_leader  # a's own view: not renewed within the deadline, it stepped down
    clock.t += 2
    await b._step()
    assert b.is_leader
    assert server.objects[("markets", "perpex-funding-eth-usdt")]["spec"]["leaseTransitions"] == 1
    # a comes back: sees b's fresh lease and stays standby
    await a._step()
    assert not a.is_leader and b.is_leader


async def test_stale_write_loses_the_race() -> None:
    server, clock = FakeApiServer(), Clock()
    a, b = _leader(server, "pod-a", clock), _leader(server, "pod-b", clock)
    await a._step()
    # a released the lease; both race to take it over from the same read
    await a.stop()
    assert server.objects[("markets", "perpex-funding-eth-usdt")]["spec"]["holderIdentity"] == ""
    c = _leader(server, "pod-c", clock)
    obj = await server.client().get("markets", "perpex-funding-eth-usdt")
    stale = lz.LeaseRecord.from_object(obj or {})
    await b._step()  # b wins first
    assert b.is_leader
    with pytest.raises(LeaseConflict):
        await server.client().patch(
            "markets", "perpex-funding-eth-usdt", lz.take_over_patch(stale, "pod-c", 15, T0)
        )
    await c._step()
    assert not c.is_leader


async def test_api_outage_keeps_leadership_only_until_the_renew_deadline() -> None:
    server, clock = FakeApiServer(), Clock()
    a = _leader(server, "pod-a", clock)
    changes: list[bool] = []
    a.add_listener(changes.append)
    await a._step()
    assert a.is_leader and changes == [True]
    server.down = True
    clock.t += 5
    with pytest.raises(ConnectionError):
        await a._step()
    await a._on_error()
    assert a.is_leader  # still inside the renew deadline
    assert not await a.confirm()  # but the pre-send check needs a live renewal
    clock.t += 6
    assert not a.is_leader and changes == [True, False]
    server.down = False
    assert not await a.confirm()
    await a._step()
    assert a.is_leader and await a.confirm()
