"""Reconcile one PerpMarket: read, decide (pure), then write, in that order.

All reads and decisions happen before the first write, so an invalid spec or an object name
held by someone else changes nothing at all. Writes are ordered so that what a Deployment
references (ConfigMap, ServiceAccount, RoleBinding) exists before the Deployment does, and
nothing is written when the live objects already match (a second reconcile is read-only).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from services.operator.config import OperatorConfig
from services.operator.diff import Action, Decision, decide, merge_patch, owned_by
from services.operator.manifests import COMPONENTS, Owner, desired_state, object_name
from services.operator.spec import FundingSpec, KeeperSpec, SpecError, parse_spec
from services.operator.status import ComponentObservation, Outcome, compute_status
from shared.kube import (
    CONFIG_MAPS,
    DEPLOYMENTS,
    ROLE_BINDINGS,
    SERVICE_ACCOUNTS,
    Kind,
    KubeApi,
    KubeError,
)


@dataclass
class ReconcileResult:
    status: dict[str, Any]
    changes: list[str] = field(default_factory=list)
    error: str | None = None


@dataclass(frozen=True)
class _Item:
    kind: Kind
    name: str
    desired: dict[str, Any] | None
    component: str | None = None


def _meta(body: Mapping[str, Any]) -> Mapping[str, Any]:
    return body.get("metadata") or {}


def _previous_conditions(body: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    return list((body.get("status") or {}).get("conditions") or [])


async def reconcile(
    kube: KubeApi, body: Mapping[str, Any], config: OperatorConfig
) -> ReconcileResult:
    owner = Owner.from_body(body)
    generation = _meta(body).get("generation")
    previous = _previous_conditions(body)
    try:
        spec = parse_spec(body.get("spec"), owner.name)
    except SpecError as exc:
        return ReconcileResult(compute_status(Outcome(invalid=exc.problems), generation, previous))

    desired = desired_state(owner, spec, config)
    items = [
        _Item(CONFIG_MAPS, object_name(owner.name), desired.config_map),
        _Item(SERVICE_ACCOUNTS, object_name(owner.name), desired.service_account),
    ]
    if config.workload_cluster_role:
        items.append(_Item(ROLE_BINDINGS, object_name(owner.name), desired.role_binding))
    for component in COMPONENTS:
        items.append(
            _Item(
                DEPLOYMENTS,
                object_name(owner.name, component),
                desired.deployments[component],
                component,
            )
        )

    result = ReconcileResult(status={})
    try:
        # 1. Read everything and decide; no writes yet.
        plan: list[tuple[_Item, Decision, dict[str, Any] | None]] = []
        for item in items:
            actual = await kube.get(item.kind, owner.namespace, item.name)
            plan.append((item, decide(item.desired, actual, owner), actual))
        conflicts = [
            f"{item.kind.plural}/{item.name} {decision.reason}"
            for item, decision, _ in plan
            if decision.action is Action.CONFLICT
        ]
        if conflicts:
            result.status = compute_status(
                Outcome(conflict="; ".join(conflicts)), generation, previous
            )
            return result

        # 2. Write: creates and patches in dependency order, deletions last.
        live: dict[str, dict[str, Any] | None] = {}
        for item, decision, actual in plan:
            if decision.action is Action.DELETE:
                continue
            obj = await _apply(kube, owner, item, decision, actual, result.changes)
            if item.component is not None:
                live[item.component] = obj
        for item, decision, _ in plan:
            if decision.action is Action.DELETE:
                await kube.delete(item.kind, owner.namespace, item.name)
                result.changes.append(f"deleted {item.kind.plural}/{item.name}")
                if item.component is not None:
                    live[item.component] = None
    except KubeError as exc:
        result.error = str(exc)
        result.status = compute_status(Outcome(error=str(exc)), generation, previous)
        return result

    settings: dict[str, KeeperSpec | FundingSpec] = {"keeper": spec.keeper, "funding": spec.funding}
    components = {
        name: ComponentObservation(
            enabled=settings[name].enabled,
            desired_replicas=0 if spec.paused else settings[name].replicas,
            deployment=live.get(name),
        )
        for name in COMPONENTS
    }
    result.status = compute_status(
        Outcome(paused=spec.paused, components=components), generation, previous
    )
    return result


async def _apply(
    kube: KubeApi,
    owner: Owner,
    item: _Item,
    decision: Decision,
    actual: dict[str, Any] | None,
    changes: list[str],
) -> dict[str, Any] | None:
    if decision.action is Action.NOOP:
        return actual
    assert decision.desired is not None
    if decision.action is Action.REPLACE:
        await kube.delete(item.kind, owner.namespace, item.name)
        changes.append(f"deleted {item.kind.plural}/{item.name} ({decision.reason})")
    if decision.action in (Action.CREATE, Action.REPLACE):
        try:
            created = await kube.create(decision.desired)
            changes.append(f"created {item.kind.plural}/{item.name}")
            return created
        except KubeError as exc:
            if exc.status != 409:
                raise
            # Created concurrently (another handler run); converge with a patch below.
    body = merge_patch(decision.desired, actual)
    patched = await kube.patch(item.kind, owner.namespace, item.name, body)
    changes.append(f"patched {item.kind.plural}/{item.name}")
    return patched


async def cleanup(kube: KubeApi, body: Mapping[str, Any], config: OperatorConfig) -> list[str]:
    """Delete every object this market owns (objects it does not own are left alone)."""
    owner = Owner.from_body(body)
    targets: list[tuple[Kind, str]] = [
        (DEPLOYMENTS, object_name(owner.name, c)) for c in COMPONENTS
    ]
    if config.workload_cluster_role:
        targets.append((ROLE_BINDINGS, object_name(owner.name)))
    targets += [
        (SERVICE_ACCOUNTS, object_name(owner.name)),
        (CONFIG_MAPS, object_name(owner.name)),
    ]
    deleted: list[str] = []
    for kind, name in targets:
        actual = await kube.get(kind, owner.namespace, name)
        if actual is None or not owned_by(actual, owner):
            continue
        if await kube.delete(kind, owner.namespace, name):
            deleted.append(f"{kind.plural}/{name}")
    return deleted
