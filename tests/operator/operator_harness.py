"""Test harness for the operator tests (fixtures are in conftest.py).

`crd_validator`: validates a PerpMarket object against the CRD's own openAPIV3Schema (loaded
from deploy/helm/perpex/crds/), the way an API server would: defaults first, then the schema,
with unknown fields rejected as `kubectl apply` (strict field validation) does.

`operator_env`: kmock's KubernetesEmulator serving the Kubernetes API over real HTTP on
127.0.0.1, with the real kopf runtime running the operator's handlers against it.
"""

from __future__ import annotations

import asyncio
import copy
import datetime
import itertools
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import jsonschema
import kmock as km
import yaml

ROOT = Path(__file__).resolve().parents[2]
CRD_PATH = ROOT / "deploy" / "helm" / "perpex" / "crds" / "perpmarkets.perpex.io.yaml"
PEERING_CRD_PATH = ROOT / "deploy" / "helm" / "perpex" / "crds" / "kopf.dev-peerings.yaml"

PM = "perpex.io/v1alpha1/perpmarkets"
DEPLOY = "apps/v1/deployments"
CM = "v1/configmaps"
SA = "v1/serviceaccounts"
RB = "rbac.authorization.k8s.io/v1/rolebindings"
PEERINGS = "kopf.dev/v1/clusterkopfpeerings"
NS = "markets"

ADDR_PM = "0x" + "11" * 20
ADDR_NFT = "0x" + "22" * 20


def market_spec(pair: str = "ETH/USDT", **overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "pair": pair,
        "chainId": 31337,
        "rpc": {"secretRef": {"name": "chain-rpc", "key": "url"}},
        "contracts": {"positionManager": ADDR_PM, "positionNFT": ADDR_NFT},
        "keeper": {"replicas": 2, "walletSecretRef": {"name": "keeper-wallet", "key": "key"}},
        "funding": {"walletSecretRef": {"name": "funding-wallet", "key": "key"}},
    }
    spec.update(overrides)
    return spec


# ---------------------------------------------------------------- CRD schema validation


def load_crd() -> dict[str, Any]:
    with CRD_PATH.open() as fh:
        return dict(yaml.safe_load(fh))


def crd_schema() -> dict[str, Any]:
    return dict(load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"])


def _strict(node: Any) -> Any:
    """Reject unknown fields where the API server would prune or (strictly) refuse them."""
    if isinstance(node, dict):
        out = {k: _strict(v) for k, v in node.items()}
        if (
            node.get("type") == "object"
            and "properties" in node
            and not node.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_strict(v) for v in node]
    return node


def apply_defaults(schema: dict[str, Any], obj: Any) -> Any:
    """Structural defaulting as the API server does it: missing fields with a default get it,
    then defaulting continues inside (so `keeper: {}` picks up its fields' defaults)."""
    if isinstance(obj, dict) and "properties" in schema:
        for key, sub in schema["properties"].items():
            if key not in obj and "default" in sub:
                obj[key] = copy.deepcopy(sub["default"])
            if key in obj:
                obj[key] = apply_defaults(sub, obj[key])
    elif isinstance(obj, list) and "items" in schema:
        return [apply_defaults(schema["items"], item) for item in obj]
    return obj


class CrdValidator:
    def __init__(self) -> None:
        self.schema = crd_schema()
        self._validator = jsonschema.Draft7Validator(_strict(self.schema))

    def errors(self, obj: dict[str, Any]) -> list[str]:
        defaulted = apply_defaults(self.schema, copy.deepcopy(obj))
        return [
            f"{'.'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
            for e in self._validator.iter_errors(defaulted)
        ]

    def defaulted(self, obj: dict[str, Any]) -> dict[str, Any]:
        return dict(apply_defaults(self.schema, copy.deepcopy(obj)))


def perpmarket(name: str, spec: dict[str, Any], namespace: str = NS, **meta: Any) -> dict[str, Any]:
    return {
        "apiVersion": "perpex.io/v1alpha1",
        "kind": "PerpMarket",
        "metadata": {"name": name, "namespace": namespace, **meta},
        "spec": spec,
    }


# ---------------------------------------------------------------- kopf against kmock


@attrs.define(kw_only=True)
class VersionedEmulator(km.KubernetesEmulator):
    """KubernetesEmulator plus the metadata an API server maintains: uid, creationTimestamp,
    a resourceVersion bumped on every write (kopf's JSON patches test it) and a generation
    bumped when the spec changes (not for the status subresource)."""

    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)

    async def _serve_version(self, request: Any) -> Any:
        # kmock answers /api/v1 discovery with groupVersion "/v1"; client-go (Helm) needs "v1".
        result = await super()._serve_version(request)
        if result.get("groupVersion") == "/v1":
            result["groupVersion"] = "v1"
        return result

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and request.action is not None:
            self._stamp(request)
        return await super()._handle(request)

    def _current(self, request: Any) -> dict[str, Any]:
        try:
            obj = self.objects[request.resource, request.namespace, request.name]
        except KeyError:
            return {}
        return {} if obj.deleted else dict(obj.get("metadata") or {})

    def _stamp(self, request: Any) -> None:
        action, data = request.action, request.data
        version = str(next(self._versions))
        if action == km.action.CREATE and isinstance(data, dict):
            meta = data.setdefault("metadata", {})
            meta.setdefault("uid", str(uuid.uuid4()))
            meta.setdefault("generation", 1)
            meta.setdefault(
                "creationTimestamp",
                datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            )
            meta["resourceVersion"] = version
        elif action == km.action.UPDATE and request.name is not None:
            generation = int(self._current(request).get("generation") or 1)
            if isinstance(data, dict):
                meta = data.setdefault("metadata", None) or {}
                data["metadata"] = meta
                meta["resourceVersion"] = version
                if "spec" in data and request.subresource is None:
                    meta["generation"] = generation + 1
            elif isinstance(data, list):
                # JSON patch: honour `test` ops as an API server does (422 on mismatch, which
                # kopf treats as "newer changes pending, retry next cycle").
                current = self._current(request)
                for op in data:
                    if op.get("op") == "test" and op.get("path") == "/metadata/resourceVersion":
                        if op.get("value") != current.get("resourceVersion"):
                            raise km.KubernetesError(
                                status=422, reason="Invalid", message="resourceVersion test failed"
                            )
                data.append({"op": "add", "path": "/metadata/resourceVersion", "value": version})
                if request.subresource is None and any(
                    str(op.get("path", "")).startswith("/spec") for op in data
                ):
                    data.append(
                        {"op": "add", "path": "/metadata/generation", "value": generation + 1}
                    )


def declare_resources(kmock: km.KubernetesEmulator) -> None:
    info = km.ResourceInfo
    every = ["get", "list", "watch", "create", "patch", "update", "delete"]
    kmock.resources[PM] = info(
        kind="PerpMarket",
        singular="perpmarket",
        namespaced=True,
        subresources=["status"],
        verbs=every,
    )
    kmock.resources[DEPLOY] = info(kind="Deployment", namespaced=True, verbs=every)
    kmock.resources[CM] = info(kind="ConfigMap", namespaced=True, verbs=every)
    kmock.resources[SA] = info(kind="ServiceAccount", namespaced=True, verbs=every)
    kmock.resources[RB] = info(kind="RoleBinding", namespaced=True, verbs=every)
    kmock.resources["v1/events"] = info(kind="Event", namespaced=True, verbs=["create"])
    kmock.resources["v1/namespaces"] = info(kind="Namespace", namespaced=False, verbs=every)
    kmock.resources[PEERINGS] = info(kind="ClusterKopfPeering", namespaced=False, verbs=every)
    # What `helm install` of the chart creates.
    kmock.resources["v1/services"] = info(kind="Service", namespaced=True, verbs=every)
    kmock.resources["rbac.authorization.k8s.io/v1/clusterroles"] = info(
        kind="ClusterRole", namespaced=False, verbs=every
    )
    kmock.resources["rbac.authorization.k8s.io/v1/clusterrolebindings"] = info(
        kind="ClusterRoleBinding", namespaced=False, verbs=every
    )
    kmock.resources["rbac.authorization.k8s.io/v1/roles"] = info(
        kind="Role", namespaced=True, verbs=every
    )
    kmock.resources["apiextensions.k8s.io/v1/customresourcedefinitions"] = info(
        kind="CustomResourceDefinition", namespaced=False, verbs=every
    )
    kmock.resources["kopf.dev/v1/kopfpeerings"] = info(
        kind="KopfPeering", namespaced=True, verbs=every
    )


class OperatorEnv:
    """A running operator plus helpers to act on and inspect the emulated cluster."""

    def __init__(self, kmock: km.KubernetesEmulator):
        self.kmock = kmock
        self.base = str(kmock.url).rstrip("/")

    def path(self, resource: str, name: str | None = None, namespace: str = NS) -> str:
        group_version, plural = resource.rsplit("/", 1)
        prefix = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
        path = f"{prefix}/namespaces/{namespace}/{plural}"
        return f"{path}/{name}" if name else path

    async def create(self, body: dict[str, Any], resource: str = PM) -> None:
        meta = body["metadata"]
        async with self.kmock.post(
            self.path(resource, namespace=meta["namespace"]), json=body
        ) as resp:
            assert resp.status < 300, await resp.text()

    async def patch(self, name: str, patch: dict[str, Any], resource: str = PM) -> None:
        async with self.kmock.patch(
            self.path(resource, name),
            json=patch,
            headers={"Content-Type": "application/merge-patch+json"},
        ) as resp:
            assert resp.status < 300, await resp.text()

    async def delete(self, name: str, resource: str = PM) -> None:
        async with self.kmock.delete(self.path(resource, name)) as resp:
            assert resp.status < 300, await resp.text()

    def get(self, resource: str, name: str, namespace: str = NS) -> dict[str, Any] | None:
        try:
            obj = self.kmock.objects[resource, namespace, name]
        except KeyError:
            return None
        if obj.deleted:
            return None
        return _plain(obj.raw)

    def names(self, resource: str, namespace: str = NS) -> list[str]:
        found = []
        for (res, ns, name), obj in self.kmock.objects.items():  # type: ignore[misc]
            if str(res.plural) == resource.rsplit("/", 1)[1] and ns == namespace:
                if not obj.deleted:
                    found.append(name)
        return sorted(found)

    def writes(self, resource_plural: str) -> int:
        """How many create/patch/update/delete requests hit objects of that kind so far."""
        count = 0
        for request in list(self.kmock):
            if request.method.value in ("POST", "PATCH", "PUT", "DELETE"):
                if f"/{resource_plural}" in str(request.url.path):
                    count += 1
        return count

    async def wait_for(
        self,
        predicate: Callable[[], Any],
        message: str = "condition",
        within: float = 15.0,
    ) -> Any:
        """Poll `predicate` until truthy. Generous default: a loaded 2-core CI machine."""
        deadline = time.monotonic() + within
        while True:
            value = predicate()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out after {within}s waiting for {message}")
            await asyncio.sleep(0.05)

    def condition(self, name: str, ctype: str) -> dict[str, Any] | None:
        market = self.get(PM, name) or {}
        for cond in (market.get("status") or {}).get("conditions") or []:
            if cond["type"] == ctype:
                return dict(cond)
        return None


def _plain(value: Any) -> Any:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


OperatorFactory = Callable[..., Awaitable[OperatorEnv]]
