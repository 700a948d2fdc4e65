"""A thin async Kubernetes REST client: GET/POST/merge-PATCH/DELETE of plain-dict objects.

Authentication and TLS come from the official `kubernetes` package's asyncio client (in-cluster
ServiceAccount token, or a kubeconfig outside a cluster); requests go through its ApiClient so
tokens refresh as usual. Objects stay plain dicts end to end, which keeps the reconcile logic
free of generated model classes. This client never touches Secrets.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from kubernetes.aio import client as kclient
from kubernetes.aio import config as kconfig

MERGE_PATCH = "application/merge-patch+json"


class KubeError(Exception):
    def __init__(self, status: int, reason: str, message: str):
        self.status = status
        self.reason = reason
        super().__init__(f"HTTP {status} {reason}: {message}")


@dataclass(frozen=True)
class Kind:
    """Where a kind of object lives in the REST API."""

    api_version: str
    plural: str

    def path(self, namespace: str, name: str | None = None) -> str:
        base = "/api/v1" if self.api_version == "v1" else f"/apis/{self.api_version}"
        path = f"{base}/namespaces/{namespace}/{self.plural}"
        return f"{path}/{name}" if name else path


CONFIG_MAPS = Kind("v1", "configmaps")
SERVICE_ACCOUNTS = Kind("v1", "serviceaccounts")
DEPLOYMENTS = Kind("apps/v1", "deployments")
ROLE_BINDINGS = Kind("rbac.authorization.k8s.io/v1", "rolebindings")
KINDS = {
    "ConfigMap": CONFIG_MAPS,
    "ServiceAccount": SERVICE_ACCOUNTS,
    "Deployment": DEPLOYMENTS,
    "RoleBinding": ROLE_BINDINGS,
}


def kind_of(obj: Mapping[str, Any]) -> Kind:
    return KINDS[obj["kind"]]


class KubeApi:
    def __init__(self, api_client: kclient.ApiClient, request_timeout: float = 30.0):
        self._api = api_client
        self._timeout = request_timeout

    @classmethod
    def for_host(cls, host: str) -> KubeApi:
        """A client for an unauthenticated API endpoint (tests, `kubectl proxy`)."""
        return cls(kclient.ApiClient(kclient.Configuration(host=host.rstrip("/"))))

    @classmethod
    async def from_environment(cls) -> KubeApi:
        """In-cluster ServiceAccount credentials when running in a pod, else the kubeconfig."""
        configuration = kclient.Configuration()
        if os.environ.get("KUBERNETES_SERVICE_HOST"):
            kconfig.load_incluster_config(client_configuration=configuration)
        else:
            await kconfig.load_kube_config(client_configuration=configuration)
        return cls(kclient.ApiClient(configuration))

    async def close(self) -> None:
        await self._api.close()

    async def version(self) -> dict[str, Any]:
        """GET /version: the API server answers (readiness probe of the operator)."""
        return await self._request("GET", "/version") or {}

    async def _request(
        self, method: str, path: str, body: Any = None, content_type: str = "application/json"
    ) -> dict[str, Any] | None:
        headers = {"Accept": "application/json"}
        if body is not None:
            headers["Content-Type"] = content_type
        serialized = await self._api.param_serialize(
            method=method,
            resource_path=path,
            header_params=headers,
            body=body,
            auth_settings=["BearerToken"],
        )
        _, url, header_params, payload, _ = serialized
        response = await self._api.call_api(
            method,
            url,
            header_params=header_params,
            body=payload,
            _request_timeout=self._timeout,
        )
        raw = await response.read()
        data = json.loads(raw) if raw else None
        if response.status == 404:
            return None
        if not 200 <= response.status < 300:
            reason = (data or {}).get("reason", "") if isinstance(data, dict) else ""
            message = (data or {}).get("message", "") if isinstance(data, dict) else ""
            raise KubeError(response.status, str(reason), str(message)[:500])
        return data if isinstance(data, dict) else {}

    async def get(self, kind: Kind, namespace: str, name: str) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        return await self._request("GET", kind.path(namespace, name))

    async def create(self, obj: Mapping[str, Any], kind: Kind | None = None) -> dict[str, Any]:
        """Create `obj` in its metadata.namespace; `kind` for kinds outside KINDS (e.g. Lease)."""
        meta = obj["metadata"]
        path = (kind or kind_of(obj)).path(meta["namespace"])
        result = await self._request("POST", path, dict(obj))
        if result is None:
            raise KubeError(404, "NotFound", f"namespace {meta['namespace']} not found")
        return result

    async def patch(
        self, kind: Kind, namespace: str, name: str, body: Mapping[str, Any]
    ) -> dict[str, Any] | None:
        """JSON merge patch (lists are replaced whole). None when the object is gone."""
        return await self._request("PATCH", kind.path(namespace, name), dict(body), MERGE_PATCH)

    async def delete(self, kind: Kind, namespace: str, name: str) -> bool:
        """Delete with background propagation. False when it was already gone."""
        body = {"apiVersion": "v1", "kind": "DeleteOptions", "propagationPolicy": "Background"}
        return await self._request("DELETE", kind.path(namespace, name), body) is not None
