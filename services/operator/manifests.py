"""Desired state of one PerpMarket's owned objects, as plain manifests (no I/O).

Per market `<name>` in namespace `<ns>` the operator owns:
  ConfigMap       perpex-<name>           non-secret env shared by both components
  ServiceAccount  perpex-<name>           identity of both components' pods
  RoleBinding     perpex-<name>           binds the workload ClusterRole (Leases) if configured
  Deployment      perpex-<name>-keeper    `perpex keeper`, spec.keeper.replicas (0 when paused)
  Deployment      perpex-<name>-funding   `perpex funding`, spec.funding.replicas (0 when paused)
Each carries an owner reference to the PerpMarket (controller=true), so that the cluster's
garbage collector removes it with the market; the delete handler removes them explicitly too.

Secrets are only referenced (secretKeyRef), never read or copied.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from services.operator.config import OperatorConfig
from services.operator.spec import KeyRef, MarketSpec

GROUP = "perpex.io"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"
KIND = "PerpMarket"
PLURAL = "perpmarkets"

MANAGED_BY = "perpex-operator"
MARKET_LABEL = "perpex.io/market"
COMPONENT_LABEL = "app.kubernetes.io/component"
CONFIG_HASH_ANNOTATION = "perpex.io/config-hash"
HEALTH_PORT = 8080
DEPLOYMENT_DIR = "/etc/perpex/deployment"
COMPONENTS = ("keeper", "funding")
RUN_AS = 10001


@dataclass(frozen=True)
class Owner:
    """The PerpMarket that owns the objects."""

    name: str
    namespace: str
    uid: str

    @classmethod
    def from_body(cls, body: Mapping[str, Any]) -> Owner:
        meta = body.get("metadata", {})
        return cls(name=meta["name"], namespace=meta["namespace"], uid=meta.get("uid", ""))


def object_name(market: str, component: str | None = None) -> str:
    return f"perpex-{market}" if component is None else f"perpex-{market}-{component}"


def labels(owner: Owner, component: str) -> dict[str, str]:
    return {
        "app.kubernetes.io/name": "perpex",
        "app.kubernetes.io/instance": owner.name,
        COMPONENT_LABEL: component,
        "app.kubernetes.io/part-of": "perpex",
        "app.kubernetes.io/managed-by": MANAGED_BY,
        MARKET_LABEL: owner.name,
    }


def selector_labels(owner: Owner, component: str) -> dict[str, str]:
    return {MARKET_LABEL: owner.name, COMPONENT_LABEL: component}


def owner_references(owner: Owner) -> list[dict[str, Any]]:
    return [
        {
            "apiVersion": API_VERSION,
            "kind": KIND,
            "name": owner.name,
            "uid": owner.uid,
            "controller": True,
            "blockOwnerDeletion": True,
        }
    ]


def _metadata(owner: Owner, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": owner.namespace,
        "labels": labels(owner, component),
        "ownerReferences": owner_references(owner),
    }


def _secret_env(name: str, ref: KeyRef) -> dict[str, Any]:
    return {"name": name, "valueFrom": {"secretKeyRef": {"name": ref.name, "key": ref.key}}}


def config_data(spec: MarketSpec, config: OperatorConfig) -> dict[str, str]:
    """Non-secret settings both components read (envFrom the market ConfigMap)."""
    data: dict[str, str] = dict(config.workload_env)
    data.update(
        {
            "CHAIN_ID": str(spec.chain_id),
            "MARKETS": spec.pair,
            "HEALTH_PORT": str(HEALTH_PORT),
        }
    )
    if spec.rpc_url is not None:
        data["RPC_URL"] = spec.rpc_url
    if spec.deployment_config_map is not None:
        data["DEPLOYMENT_FILE"] = f"{DEPLOYMENT_DIR}/{spec.deployment_config_map.key}"
    else:
        assert spec.position_manager is not None and spec.position_nft is not None
        data["POSITION_MANAGER_ADDRESS"] = spec.position_manager
        data["POSITION_NFT_ADDRESS"] = spec.position_nft
    return dict(sorted(data.items()))


def config_map(owner: Owner, spec: MarketSpec, config: OperatorConfig) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": _metadata(owner, object_name(owner.name), "market"),
        "data": config_data(spec, config),
    }


def service_account(owner: Owner) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(owner, object_name(owner.name), "market"),
        "automountServiceAccountToken": False,
    }


def role_binding(owner: Owner, cluster_role: str) -> dict[str, Any]:
    return {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(owner, object_name(owner.name), "market"),
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": cluster_role,
        },
        "subjects": [
            {
                "kind": "ServiceAccount",
                "name": object_name(owner.name),
                "namespace": owner.namespace,
            }
        ],
    }


def config_hash(data: Mapping[str, str]) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:16]


def _component_env(owner: Owner, spec: MarketSpec, component: str) -> list[dict[str, Any]]:
    env: list[dict[str, Any]] = []
    if spec.rpc_secret is not None:
        env.append(_secret_env("RPC_URL", spec.rpc_secret))
    if component == "keeper":
        assert spec.keeper.wallet is not None
        env.append(_secret_env("KEEPER_PRIVATE_KEY", spec.keeper.wallet))
        env += [
            {"name": "POLL_INTERVAL_MS", "value": str(spec.keeper.poll_interval_ms)},
            {"name": "MAX_RETRIES", "value": str(spec.keeper.max_retries)},
            {"name": "GAS_MULTIPLIER", "value": repr(spec.keeper.gas_multiplier)},
            {"name": "KEEPER_MIN_BALANCE_ETH", "value": spec.keeper.min_balance_eth},
        ]
    else:
        assert spec.funding.wallet is not None
        env.append(_secret_env("FUNDING_PRIVATE_KEY", spec.funding.wallet))
        env += [
            {"name": "FUNDING_INTERVAL_S", "value": str(spec.funding.interval_seconds)},
            {"name": "LEADER_ELECTION", "value": "kubernetes"},
            # one Lease per market (the default is per pair: two markets of one pair on
            # different chains, in one namespace, would elect a single leader between them)
            {"name": "LEASE_NAME", "value": object_name(owner.name, "funding")},
        ]
    env += [
        {"name": "POD_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": "POD_NAMESPACE", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
        {"name": "OTEL_SERVICE_NAME", "value": f"perpex-{component}"},
        {
            "name": "OTEL_RESOURCE_ATTRIBUTES",
            "value": f"perpex.market={spec.pair},k8s.namespace.name={owner.namespace},"
            f"perpex.perpmarket={owner.name}",
        },
    ]
    return env


def deployment(
    owner: Owner, spec: MarketSpec, config: OperatorConfig, component: str
) -> dict[str, Any]:
    """The keeper or funding Deployment for a market."""
    if component not in COMPONENTS:
        raise ValueError(f"unknown component {component!r}")
    settings = spec.keeper if component == "keeper" else spec.funding
    replicas = 0 if spec.paused else settings.replicas
    env = _component_env(owner, spec, component)
    if config.db_secret is not None:
        env.insert(0, _secret_env("DB_URI", config.db_secret))

    volumes: list[dict[str, Any]] = [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}]
    mounts: list[dict[str, Any]] = [{"name": "tmp", "mountPath": "/tmp"}]
    if spec.deployment_config_map is not None:
        ref = spec.deployment_config_map
        volumes.append(
            {
                "name": "deployment",
                "configMap": {"name": ref.name, "items": [{"key": ref.key, "path": ref.key}]},
            }
        )
        mounts.append({"name": "deployment", "mountPath": DEPLOYMENT_DIR, "readOnly": True})

    probe = {"port": "health", "scheme": "HTTP"}
    container: dict[str, Any] = {
        "name": component,
        "image": config.image,
        "imagePullPolicy": config.image_pull_policy,
        "args": [component],
        "envFrom": [{"configMapRef": {"name": object_name(owner.name)}}],
        "env": env,
        "ports": [{"name": "health", "containerPort": HEALTH_PORT, "protocol": "TCP"}],
        "livenessProbe": {
            "httpGet": {"path": "/healthz", **probe},
            "initialDelaySeconds": 10,
            "periodSeconds": 10,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "readinessProbe": {
            "httpGet": {"path": "/readyz", **probe},
            "initialDelaySeconds": 5,
            "periodSeconds": 5,
            "timeoutSeconds": 3,
            "failureThreshold": 3,
        },
        "resources": spec.resources,
        "securityContext": {
            "allowPrivilegeEscalation": False,
            "readOnlyRootFilesystem": True,
            "runAsNonRoot": True,
            "capabilities": {"drop": ["ALL"]},
        },
        "volumeMounts": mounts,
    }
    pod_spec: dict[str, Any] = {
        "serviceAccountName": object_name(owner.name),
        # Only the funding updater talks to the API server (its Lease).
        "automountServiceAccountToken": component == "funding",
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": RUN_AS,
            "runAsGroup": RUN_AS,
            "fsGroup": RUN_AS,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "terminationGracePeriodSeconds": 30,
        "containers": [container],
        "volumes": volumes,
    }
    if config.image_pull_secrets:
        pod_spec["imagePullSecrets"] = [{"name": s} for s in config.image_pull_secrets]
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": _metadata(owner, object_name(owner.name, component), component),
        "spec": {
            "replicas": replicas,
            "revisionHistoryLimit": 3,
            "selector": {"matchLabels": selector_labels(owner, component)},
            # One keeper/funding process per pod; never two funding updaters racing a rollout
            # (the Lease guards it too).
            "strategy": {
                "type": "RollingUpdate",
                "rollingUpdate": {"maxSurge": 0, "maxUnavailable": 1},
            }
            if component == "funding"
            else {"type": "RollingUpdate", "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0}},
            "template": {
                "metadata": {
                    "labels": labels(owner, component),
                    "annotations": {
                        CONFIG_HASH_ANNOTATION: config_hash(config_data(spec, config)),
                    },
                },
                "spec": pod_spec,
            },
        },
    }


@dataclass(frozen=True)
class DesiredState:
    """Everything one market should own. Components set to None must not exist."""

    config_map: dict[str, Any]
    service_account: dict[str, Any]
    role_binding: dict[str, Any] | None
    deployments: dict[str, dict[str, Any] | None]


def desired_state(owner: Owner, spec: MarketSpec, config: OperatorConfig) -> DesiredState:
    enabled = {"keeper": spec.keeper.enabled, "funding": spec.funding.enabled}
    return DesiredState(
        config_map=config_map(owner, spec, config),
        service_account=service_account(owner),
        role_binding=role_binding(owner, config.workload_cluster_role)
        if config.workload_cluster_role
        else None,
        deployments={
            component: deployment(owner, spec, config, component) if enabled[component] else None
            for component in COMPONENTS
        },
    )
