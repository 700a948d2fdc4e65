"""Kubernetes Lease leader election, the decision part (pure).

The protocol is the one client-go's leaderelection package follows with a
coordination.k8s.io/v1 Lease:

- no Lease yet: create it naming ourselves holder;
- we hold it: renew (`renewTime` = now) every retry period; we stay leader only while the last
  successful renewal is younger than the renew deadline (< leaseDurationSeconds), so we stop
  sending before anyone else may take over;
- someone else holds it: their lease expires `leaseDurationSeconds` after *we* last saw the
  record change (our monotonic clock, so clock skew between nodes does not matter); then we
  take it over (`leaseTransitions` + 1); an empty holder (released on shutdown) is free now.

Every write carries the `resourceVersion` we read, so the API server refuses (409 Conflict) a
write based on a stale read: two candidates can never both win the same round.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

LEASE_API_VERSION = "coordination.k8s.io/v1"
NAME_PREFIX = "perpex-funding"
MAX_NAME = 63


def slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def election_name(pairs: list[str], prefix: str = NAME_PREFIX) -> str:
    """`perpex-funding-eth-usdt` for one market; the markets joined for several;
    `perpex-funding-all` when the updater handles every deployed market. Kept a valid
    Kubernetes name (<= 63 characters, a hash suffix when shortened)."""
    if not pairs:
        return f"{prefix}-all"
    name = f"{prefix}-" + "-".join(slug(p) for p in sorted(pairs))
    if len(name) <= MAX_NAME:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:10]
    return name[: MAX_NAME - 11].rstrip("-") + "-" + digest


def micro_time(moment: dt.datetime) -> str:
    """A Kubernetes MicroTime: RFC 3339 UTC with microseconds."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True)
class LeaseRecord:
    holder: str | None
    duration_s: int
    acquire_time: str | None
    renew_time: str | None
    transitions: int
    resource_version: str | None

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> LeaseRecord:
        spec = obj.get("spec") or {}
        meta = obj.get("metadata") or {}
        holder = spec.get("holderIdentity")
        rv = meta.get("resourceVersion")
        return cls(
            holder=str(holder) if holder else None,
            duration_s=int(spec.get("leaseDurationSeconds") or 0),
            acquire_time=spec.get("acquireTime"),
            renew_time=spec.get("renewTime"),
            transitions=int(spec.get("leaseTransitions") or 0),
            resource_version=str(rv) if rv is not None else None,
        )

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        """Changes whenever the holder renews or changes."""
        return (self.holder, self.renew_time, self.transitions, self.resource_version)


class Step(StrEnum):
    CREATE = "create"
    RENEW = "renew"
    TAKE_OVER = "take_over"
    WAIT = "wait"


@dataclass(frozen=True)
class Plan:
    step: Step
    wait_s: float = 0.0  # for WAIT: until the other holder's lease runs out, as we observe it


def plan(record: LeaseRecord | None, identity: str, observed_at: float, now: float) -> Plan:
    """What to do this round. `observed_at` is when (monotonic) we first saw `record` as it is."""
    if record is None:
        return Plan(Step.CREATE)
    if record.holder == identity:
        return Plan(Step.RENEW)
    if not record.holder:
        return Plan(Step.TAKE_OVER)
    expires = observed_at + max(record.duration_s, 1)
    if now >= expires:
        return Plan(Step.TAKE_OVER)
    return Plan(Step.WAIT, expires - now)


class Observer:
    """Remembers when the lease record last changed, by our monotonic clock."""

    def __init__(self) -> None:
        self._fingerprint: tuple[Any, ...] | None = None
        self.observed_at = 0.0

    def observe(self, record: LeaseRecord | None, now: float) -> float:
        fingerprint = record.fingerprint if record is not None else None
        if fingerprint != self._fingerprint:
            self._fingerprint = fingerprint
            self.observed_at = now
        return self.observed_at


def still_leading(renewed_at: float | None, renew_deadline_s: float, now: float) -> bool:
    """Leader only while the last successful renewal is younger than the renew deadline."""
    return renewed_at is not None and now - renewed_at < renew_deadline_s


def new_lease(
    name: str, namespace: str, identity: str, duration_s: int, now: dt.datetime
) -> dict[str, Any]:
    stamp = micro_time(now)
    return {
        "apiVersion": LEASE_API_VERSION,
        "kind": "Lease",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/name": "perpex",
                "app.kubernetes.io/component": "funding",
            },
        },
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": duration_s,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": 0,
        },
    }


def _precondition(record: LeaseRecord) -> dict[str, Any]:
    return {"resourceVersion": record.resource_version} if record.resource_version else {}


def renew_patch(record: LeaseRecord, duration_s: int, now: dt.datetime) -> dict[str, Any]:
    return {
        "metadata": _precondition(record),
        "spec": {"renewTime": micro_time(now), "leaseDurationSeconds": duration_s},
    }


def take_over_patch(
    record: LeaseRecord, identity: str, duration_s: int, now: dt.datetime
) -> dict[str, Any]:
    stamp = micro_time(now)
    return {
        "metadata": _precondition(record),
        "spec": {
            "holderIdentity": identity,
            "leaseDurationSeconds": duration_s,
            "acquireTime": stamp,
            "renewTime": stamp,
            "leaseTransitions": record.transitions + 1,
        },
    }


def release_patch(record: LeaseRecord, now: dt.datetime) -> dict[str, Any]:
    """Give the lease up on shutdown so a standby takes over at once (as client-go's
    ReleaseOnCancel does: empty holder, 1-second duration)."""
    return {
        "metadata": _precondition(record),
        "spec": {"holderIdentity": "", "leaseDurationSeconds": 1, "renewTime": micro_time(now)},
    }
