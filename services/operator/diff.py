"""Diff decisions between desired manifests and live objects (no I/O).

The API server adds defaults to what it stores (imagePullPolicy, terminationMessagePath,
protocol, status, ...), so "in sync" means: every field the operator sets has the value it
wants; extra fields on the live object are left alone. Lists are compared element by element
and must have the same length, since a JSON merge patch replaces a list whole.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from services.operator.manifests import Owner


class ChildAction(enum.Enum):
    NOOP = "noop"
    CREATE = "create"
    PATCH = "patch"
    DELETE = "delete"
    REPLACE = "replace"  # a field the API server never changes differs: delete, then create
    CONFLICT = "conflict"  # an object of that name exists but another owner controls it


_SUFFIXES = {
    "": Decimal(1),
    "m": Decimal("0.001"),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "Ki": Decimal(2**10),
    "Mi": Decimal(2**20),
    "Gi": Decimal(2**30),
    "Ti": Decimal(2**40),
}
_QUANTITY = re.compile(r"^([0-9]+(?:\.[0-9]+)?)(m|k|M|G|T|Ki|Mi|Gi|Ti)?$")


def quantity(value: Any) -> Decimal | None:
    """A Kubernetes resource quantity as a number ("500m" and "0.5" are equal), else None."""
    match = _QUANTITY.match(str(value)) if isinstance(value, str | int | float) else None
    if match is None:
        return None
    return Decimal(match.group(1)) * _SUFFIXES[match.group(2) or ""]


def contains(actual: Any, desired: Any, *, quantities: bool = False) -> bool:
    """True when `actual` holds every field and value of `desired` (recursively).

    Under a `resources` key, values compare as quantities: the API server stores them in
    canonical form ("1000m" comes back as "1"), which is no difference.
    """
    if isinstance(desired, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(
            key in actual
            and contains(actual[key], value, quantities=quantities or key == "resources")
            for key, value in desired.items()
        )
    if isinstance(desired, list):
        if not isinstance(actual, list) or len(actual) != len(desired):
            return False
        return all(
            contains(a, d, quantities=quantities) for a, d in zip(actual, desired, strict=True)
        )
    if quantities and actual != desired:
        a, d = quantity(actual), quantity(desired)
        return a is not None and a == d
    if isinstance(desired, bool) or isinstance(actual, bool):
        return actual is desired
    if isinstance(desired, int | float) and isinstance(actual, int | float):
        return float(actual) == float(desired)
    return bool(actual == desired)


# Top-level fields the API server refuses to change (422): a RoleBinding's roleRef (after the
# workload ClusterRole was renamed, say). Patching them would fail at every reconcile and block
# every later change to the market.
IMMUTABLE_FIELDS = ("roleRef",)


def owned_by(actual: Mapping[str, Any], owner: Owner) -> bool:
    """True when `owner` is the live object's controller (matched by uid, else by name)."""
    for ref in actual.get("metadata", {}).get("ownerReferences", []) or []:
        if ref.get("kind") != "PerpMarket" or not ref.get("controller"):
            continue
        if owner.uid and ref.get("uid"):
            return bool(ref["uid"] == owner.uid)
        return bool(ref.get("name") == owner.name)
    return False


def merge_patch(
    desired: Mapping[str, Any], actual: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    """The JSON merge patch that brings a live object to `desired` (its managed fields). A
    ConfigMap's `data` is wholly ours: keys the live object has and `desired` does not are
    removed (null in a merge patch), or a setting dropped from the spec would stay in force."""
    body = {key: value for key, value in desired.items() if key not in ("apiVersion", "kind")}
    meta = dict(body.get("metadata", {}))
    meta.pop("name", None)
    meta.pop("namespace", None)
    body["metadata"] = meta
    stale = _stale_data_keys(desired, actual)
    if stale:
        body["data"] = {**desired["data"], **dict.fromkeys(stale)}
    return body


def _stale_data_keys(desired: Mapping[str, Any], actual: Mapping[str, Any] | None) -> list[str]:
    if actual is None or not isinstance(desired.get("data"), Mapping):
        return []
    live = actual.get("data") or {}
    return sorted(key for key in live if key not in desired["data"])


@dataclass(frozen=True)
class Decision:
    action: ChildAction
    desired: dict[str, Any] | None = None
    reason: str = ""


def decide(
    desired: dict[str, Any] | None, actual: Mapping[str, Any] | None, owner: Owner
) -> Decision:
    """What to do with one object: create, patch, delete, nothing, or refuse (conflict)."""
    if actual is not None and not owned_by(actual, owner):
        if desired is None:
            return Decision(ChildAction.NOOP, reason="exists but is not ours; left alone")
        return Decision(
            ChildAction.CONFLICT, desired, reason="exists and is not owned by this market"
        )
    if desired is None:
        return Decision(ChildAction.DELETE if actual is not None else ChildAction.NOOP)
    if actual is None:
        return Decision(ChildAction.CREATE, desired)
    if contains(actual, desired) and not _stale_data_keys(desired, actual):
        return Decision(ChildAction.NOOP, desired)
    if any(
        field in desired and not contains(actual.get(field), desired[field])
        for field in IMMUTABLE_FIELDS
    ):
        return Decision(ChildAction.REPLACE, desired, reason="an immutable field changed")
    return Decision(ChildAction.PATCH, desired)
