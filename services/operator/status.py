"""PerpMarket status: conditions (Ready, Progressing, Degraded), observedGeneration and per
component replica counts, computed from what was observed (no I/O).

Conditions follow the Kubernetes convention: {type, status "True"/"False", reason (CamelCase),
message, lastTransitionTime, observedGeneration}; lastTransitionTime only moves when the status
of that condition flips.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CONDITION_TYPES = ("Ready", "Progressing", "Degraded")


def now_iso() -> str:
    return (
        datetime.datetime.now(datetime.UTC)
        .replace(microsecond=0)
        .isoformat()
        .replace("+00:00", "Z")
    )


@dataclass(frozen=True)
class ComponentObservation:
    """One component (keeper or funding) as found in the cluster."""

    enabled: bool
    desired_replicas: int
    deployment: Mapping[str, Any] | None = None

    @property
    def ready_replicas(self) -> int:
        if self.deployment is None:
            return 0
        return int((self.deployment.get("status") or {}).get("readyReplicas") or 0)

    @property
    def rollout_failure(self) -> str | None:
        """A message when the Deployment reports it cannot progress, else None."""
        if self.deployment is None:
            return None
        for cond in (self.deployment.get("status") or {}).get("conditions") or []:
            if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
                return str(cond.get("message") or cond.get("reason") or "replica failure")
            if (
                cond.get("type") == "Progressing"
                and cond.get("status") == "False"
                and cond.get("reason") == "ProgressDeadlineExceeded"
            ):
                return str(cond.get("message") or "progress deadline exceeded")
        return None

    @property
    def rolled_out(self) -> bool:
        """All desired replicas are ready and the controller has seen the latest spec."""
        if not self.enabled:
            return True
        if self.deployment is None:
            return False
        status = self.deployment.get("status") or {}
        generation = (self.deployment.get("metadata") or {}).get("generation")
        observed = status.get("observedGeneration")
        if generation is not None and observed is not None and observed < generation:
            return False
        return self.ready_replicas >= self.desired_replicas


@dataclass(frozen=True)
class ReconcileOutcome:
    """What a reconcile found. Exactly one of the problem fields is set, or none."""

    invalid: Sequence[str] = ()
    conflict: str | None = None
    error: str | None = None
    paused: bool = False
    components: Mapping[str, ComponentObservation] = field(default_factory=dict)


def _condition(
    ctype: str,
    status: bool,
    reason: str,
    message: str,
    generation: int | None,
    previous: Mapping[str, Mapping[str, Any]],
    now: str,
) -> dict[str, Any]:
    value = "True" if status else "False"
    prev = previous.get(ctype)
    since = prev.get("lastTransitionTime") if prev and prev.get("status") == value else None
    cond: dict[str, Any] = {
        "type": ctype,
        "status": value,
        "reason": reason,
        "message": message,
        "lastTransitionTime": since or now,
    }
    if generation is not None:
        cond["observedGeneration"] = generation
    return cond


def compute_status(
    outcome: ReconcileOutcome,
    generation: int | None,
    previous_conditions: Sequence[Mapping[str, Any]] | None = None,
    now: str | None = None,
) -> dict[str, Any]:
    """The full `.status` to write for a PerpMarket."""
    now = now or now_iso()
    previous = {c.get("type", ""): c for c in previous_conditions or [] if isinstance(c, Mapping)}

    def cond(ctype: str, status: bool, reason: str, message: str) -> dict[str, Any]:
        return _condition(ctype, status, reason, message, generation, previous, now)

    status: dict[str, Any] = {}
    if generation is not None:
        status["observedGeneration"] = generation
    for name, comp in outcome.components.items():
        status[name] = {
            "enabled": comp.enabled,
            "replicas": comp.desired_replicas if comp.enabled else 0,
            "readyReplicas": comp.ready_replicas if comp.enabled else 0,
        }
    keeper = status.get("keeper", {"readyReplicas": 0, "replicas": 0})
    status["keepers"] = f"{keeper['readyReplicas']}/{keeper['replicas']}"

    if outcome.invalid:
        message = "invalid spec: " + "; ".join(outcome.invalid)
        status["conditions"] = [
            cond("Ready", False, "InvalidSpec", "the spec is invalid; nothing was changed"),
            cond("Progressing", False, "InvalidSpec", "waiting for a valid spec"),
            cond("Degraded", True, "InvalidSpec", message),
        ]
        return status
    if outcome.conflict is not None:
        status["conditions"] = [
            cond("Ready", False, "Conflict", outcome.conflict),
            cond("Progressing", False, "Conflict", "blocked by an object the market does not own"),
            cond("Degraded", True, "Conflict", outcome.conflict),
        ]
        return status
    if outcome.error is not None:
        status["conditions"] = [
            cond("Ready", False, "ReconcileError", outcome.error),
            cond("Progressing", True, "Retrying", "reconcile failed; retrying"),
            cond("Degraded", True, "ReconcileError", outcome.error),
        ]
        return status
    if outcome.paused:
        status["conditions"] = [
            cond("Ready", False, "Paused", "the market is paused; components scaled to zero"),
            cond("Progressing", False, "Paused", "paused"),
            cond("Degraded", False, "Paused", "paused"),
        ]
        return status

    enabled = {n: c for n, c in outcome.components.items() if c.enabled}
    failures = {n: c.rollout_failure for n, c in enabled.items() if c.rollout_failure}
    pending = sorted(n for n, c in enabled.items() if not c.rolled_out)
    if failures:
        message = "; ".join(f"{n}: {m}" for n, m in sorted(failures.items()))
        degraded = cond("Degraded", True, "RolloutFailed", message)
    else:
        degraded = cond("Degraded", False, "AsExpected", "no problems found")
    if not enabled:
        ready = cond("Ready", True, "NoComponents", "keeper and funding are both disabled")
        progressing = cond("Progressing", False, "Idle", "nothing to run")
    elif pending:
        detail = ", ".join(
            f"{n} {enabled[n].ready_replicas}/{enabled[n].desired_replicas} ready" for n in pending
        )
        ready = cond("Ready", False, "RollingOut", f"waiting for {detail}")
        progressing = cond("Progressing", True, "RollingOut", f"waiting for {detail}")
    else:
        detail = ", ".join(
            f"{n} {c.ready_replicas}/{c.desired_replicas}" for n, c in sorted(enabled.items())
        )
        ready = cond("Ready", True, "AllReplicasReady", f"all components ready: {detail}")
        progressing = cond("Progressing", False, "RolledOut", "rollout complete")
    status["conditions"] = [ready, progressing, degraded]
    return status


def status_changed(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> bool:
    """Whether writing `new` would change anything (ignores lastTransitionTime drift)."""
    old = old or {}

    def strip(s: Mapping[str, Any]) -> dict[str, Any]:
        out = {k: v for k, v in s.items() if k in new or k in ("conditions",)}
        out["conditions"] = [
            {k: v for k, v in c.items() if k != "lastTransitionTime"}
            for c in s.get("conditions") or []
        ]
        return out

    return strip(old) != strip(new)
