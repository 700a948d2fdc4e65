"""The operator under the real kopf runtime, against kmock's Kubernetes API emulation over HTTP.

Every test starts kopf with the operator's handlers (the same `register()` the CLI uses),
talks to the emulated API server only through HTTP, and inspects what the operator stored.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from operator_harness import (
    CM,
    DEPLOY,
    NS,
    PEERINGS,
    PM,
    RB,
    SA,
    OperatorFactory,
    market_spec,
    perpmarket,
)

from services.operator.config import OperatorConfig
from services.operator.handlers import refresh
from services.operator.spec import HEX_KEY_RE
from services.operator.status import now_iso
from shared.kube import KubeApi

UID = "8b6f4a52-1d5e-4d0b-9d4e-0a1b2c3d4e5f"


def env_map(deployment: dict[str, Any]) -> dict[str, Any]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container["env"]}


def replicas(env: Any, component: str, market: str = "eth-usdt") -> Any:
    dep = env.get(DEPLOY, f"perpex-{market}-{component}")
    return None if dep is None else dep["spec"]["replicas"]


async def test_new_market_creates_owned_deployments_with_env_and_secret_refs(
    start_operator: OperatorFactory,
):
    env = await start_operator()
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))

    keeper = await env.wait_for(
        lambda: env.get(DEPLOY, "perpex-eth-usdt-keeper"), "keeper Deployment"
    )
    funding = await env.wait_for(
        lambda: env.get(DEPLOY, "perpex-eth-usdt-funding"), "funding Deployment"
    )
    config_map = env.get(CM, "perpex-eth-usdt")
    account = env.get(SA, "perpex-eth-usdt")
    assert config_map is not None and account is not None

    # Owned by the market, for the garbage collector.
    for obj in (keeper, funding, config_map, account):
        (ref,) = obj["metadata"]["ownerReferences"]
        assert ref == {
            "apiVersion": "perpex.io/v1alpha1",
            "kind": "PerpMarket",
            "name": "eth-usdt",
            "uid": UID,
            "controller": True,
            "blockOwnerDeletion": True,
        }

    # Shared, non-secret settings come from the market ConfigMap.
    assert config_map["data"]["MARKETS"] == "ETH/USDT"
    assert config_map["data"]["CHAIN_ID"] == "31337"
    assert config_map["data"]["POSITION_MANAGER_ADDRESS"] == "0x" + "11" * 20
    assert "RPC_URL" not in config_map["data"]  # it comes from a Secret here

    keeper_env = env_map(keeper)
    assert keeper["spec"]["replicas"] == 2
    assert keeper["spec"]["template"]["spec"]["containers"][0]["args"] == ["keeper"]
    assert keeper["spec"]["template"]["spec"]["containers"][0]["envFrom"] == [
        {"configMapRef": {"name": "perpex-eth-usdt"}}
    ]
    assert keeper_env["KEEPER_PRIVATE_KEY"] == {
        "secretKeyRef": {"name": "keeper-wallet", "key": "key"}
    }
    assert keeper_env["RPC_URL"] == {"secretKeyRef": {"name": "chain-rpc", "key": "url"}}
    assert keeper_env["GAS_MULTIPLIER"] == "1.2"
    assert keeper_env["MAX_RETRIES"] == "5"
    assert keeper_env["KEEPER_MIN_BALANCE_ETH"] == "0.05"
    assert "FUNDING_PRIVATE_KEY" not in keeper_env

    funding_env = env_map(funding)
    assert funding["spec"]["replicas"] == 1
    assert funding_env["FUNDING_PRIVATE_KEY"] == {
        "secretKeyRef": {"name": "funding-wallet", "key": "key"}
    }
    assert funding_env["LEADER_ELECTION"] == "kubernetes"
    assert funding_env["FUNDING_INTERVAL_SECONDS"] == "28800"  # the default: the contract's 8 h
    assert funding_env["POD_NAME"] == {"fieldRef": {"fieldPath": "metadata.name"}}
    assert funding_env["POD_NAMESPACE"] == {"fieldRef": {"fieldPath": "metadata.namespace"}}
    assert "KEEPER_PRIVATE_KEY" not in funding_env

    # No literal value anywhere looks like key material.
    for value in [*keeper_env.values(), *funding_env.values(), *config_map["data"].values()]:
        assert not (isinstance(value, str) and HEX_KEY_RE.match(value))

    # Hardened pods.
    pod = keeper["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["containers"][0]["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["serviceAccountName"] == "perpex-eth-usdt"

    # Status: created but nothing ready yet in the emulator.
    await env.wait_for(lambda: env.condition("eth-usdt", "Progressing"), "status")
    market = env.get(PM, "eth-usdt")
    assert market is not None
    assert market["status"]["observedGeneration"] == 1
    assert market["status"]["keepers"] == "0/2"
    assert env.condition("eth-usdt", "Ready")["status"] == "False"  # type: ignore[index]
    assert env.condition("eth-usdt", "Progressing")["status"] == "True"  # type: ignore[index]
    assert env.condition("eth-usdt", "Degraded")["status"] == "False"  # type: ignore[index]


async def test_second_reconcile_changes_nothing_and_replicas_change_patches(
    start_operator: OperatorFactory,
):
    env = await start_operator()  # status timer every 0.5 s re-runs the reconcile
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))
    await env.wait_for(lambda: replicas(env, "keeper") == 2, "keeper with 2 replicas")
    await env.wait_for(lambda: env.condition("eth-usdt", "Ready"), "first status")

    def reads() -> int:
        return len([r for r in env.kmock if "/deployments/" in str(r.url.path)])

    # Let any reconcile that overlapped the first one finish (two more full timer runs), then
    # take the baseline: several timer-driven reconciles later, nothing was written again.
    settled = reads() + 4
    await env.wait_for(lambda: reads() >= settled, "two more reconciles")
    writes = {kind: env.writes(kind) for kind in ("deployments", "configmaps", "serviceaccounts")}
    status_writes = env.writes("perpmarkets/eth-usdt/status")
    later = reads() + 6
    await env.wait_for(
        lambda: reads() >= later, "three more reconciles (reads of both Deployments)"
    )
    assert {k: env.writes(k) for k in writes} == writes
    assert env.writes("perpmarkets/eth-usdt/status") == status_writes

    await env.patch("eth-usdt", {"spec": {"keeper": {"replicas": 3}}})
    await env.wait_for(lambda: replicas(env, "keeper") == 3, "keeper scaled to 3")
    await env.wait_for(
        lambda: (env.get(PM, "eth-usdt") or {}).get("status", {}).get("observedGeneration") == 2,
        "observedGeneration 2",
    )
    assert replicas(env, "funding") == 1
    assert env.get(PM, "eth-usdt")["status"]["keepers"] == "0/3"  # type: ignore[index]


async def test_pause_scales_to_zero_and_resume_restores(start_operator: OperatorFactory):
    env = await start_operator()
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))
    await env.wait_for(lambda: replicas(env, "keeper") == 2, "keeper running")

    await env.patch("eth-usdt", {"spec": {"paused": True}})
    await env.wait_for(
        lambda: replicas(env, "keeper") == 0 and replicas(env, "funding") == 0, "scaled to zero"
    )
    ready = await env.wait_for(
        lambda: (c := env.condition("eth-usdt", "Ready")) and c["reason"] == "Paused" and c,
        "Ready=False/Paused",
    )
    assert ready["status"] == "False"
    assert env.get(CM, "perpex-eth-usdt") is not None  # paused, not deleted

    await env.patch("eth-usdt", {"spec": {"paused": False}})
    await env.wait_for(
        lambda: replicas(env, "keeper") == 2 and replicas(env, "funding") == 1, "resumed"
    )


async def test_delete_cleans_up_everything(start_operator: OperatorFactory):
    env = await start_operator()
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))
    await env.create(perpmarket("btc-usdt", market_spec("BTC/USDT"), uid=UID + "-b"))
    await env.wait_for(lambda: env.get(DEPLOY, "perpex-eth-usdt-funding"), "eth objects")
    await env.wait_for(lambda: env.get(DEPLOY, "perpex-btc-usdt-funding"), "btc objects")
    market = env.get(PM, "eth-usdt")
    assert market is not None and market["metadata"]["finalizers"]

    await env.delete("eth-usdt")
    await env.wait_for(lambda: env.get(PM, "eth-usdt") is None, "market released and gone")
    for resource in (DEPLOY, CM, SA):
        assert not [n for n in env.names(resource) if n.startswith("perpex-eth-usdt")]
    # The other market is untouched.
    assert env.get(DEPLOY, "perpex-btc-usdt-keeper") is not None
    assert env.get(CM, "perpex-btc-usdt") is not None


async def test_invalid_spec_is_degraded_and_creates_nothing(start_operator: OperatorFactory):
    env = await start_operator()
    bad = market_spec("eth-usdt")  # lowercase pair
    bad["keeper"] = {"replicas": 2}  # enabled keeper without a wallet Secret
    await env.create(perpmarket("eth-usdt", bad, uid=UID))

    degraded = await env.wait_for(
        lambda: (c := env.condition("eth-usdt", "Degraded")) and c["status"] == "True" and c,
        "Degraded=True",
    )
    assert degraded["reason"] == "InvalidSpec"
    assert "spec.pair" in degraded["message"]
    assert "spec.keeper.walletSecretRef" in degraded["message"]
    assert env.condition("eth-usdt", "Ready")["status"] == "False"  # type: ignore[index]
    for resource in (DEPLOY, CM, SA):
        assert env.names(resource) == []
    assert env.writes("deployments") == env.writes("configmaps") == 0

    # Fixing the spec reconciles normally.
    await env.patch(
        "eth-usdt",
        {
            "spec": {
                "pair": "ETH/USDT",
                "keeper": {
                    "replicas": 2,
                    "walletSecretRef": {"name": "keeper-wallet", "key": "key"},
                },
            }
        },
    )
    await env.wait_for(lambda: replicas(env, "keeper") == 2, "keeper after the fix")
    await env.wait_for(
        lambda: (c := env.condition("eth-usdt", "Degraded")) and c["status"] == "False",
        "Degraded cleared",
    )


async def test_becoming_invalid_leaves_existing_objects_untouched(
    start_operator: OperatorFactory,
):
    env = await start_operator()
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))
    await env.wait_for(lambda: replicas(env, "keeper") == 2, "keeper running")
    # The first reconcile is over once it wrote the status (after every object).
    await env.wait_for(lambda: env.condition("eth-usdt", "Ready"), "first status")
    writes = env.writes("deployments")

    await env.patch("eth-usdt", {"spec": {"keeper": {"replicas": 99}}})
    await env.wait_for(
        lambda: (c := env.condition("eth-usdt", "Degraded")) and c["status"] == "True",
        "Degraded=True",
    )
    assert replicas(env, "keeper") == 2
    assert env.writes("deployments") == writes


async def test_timer_refreshes_status_from_deployments_and_repairs_drift(
    start_operator: OperatorFactory,
):
    env = await start_operator()
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))
    await env.wait_for(lambda: env.get(DEPLOY, "perpex-eth-usdt-funding"), "Deployments")

    # The Deployment controller (not emulated) would report ready replicas like this.
    for component, count in (("keeper", 2), ("funding", 1)):
        await env.patch(
            f"perpex-eth-usdt-{component}", {"status": {"readyReplicas": count}}, DEPLOY
        )
    ready = await env.wait_for(
        lambda: (c := env.condition("eth-usdt", "Ready")) and c["status"] == "True" and c,
        "Ready=True from the timer",
    )
    assert ready["reason"] == "AllReplicasReady"
    market = env.get(PM, "eth-usdt")
    assert market is not None
    assert market["status"]["keepers"] == "2/2"
    assert market["status"]["keeper"] == {"enabled": True, "replicas": 2, "readyReplicas": 2}
    assert env.condition("eth-usdt", "Progressing")["status"] == "False"  # type: ignore[index]

    # Someone deletes the keeper Deployment by hand: the next refresh recreates it.
    await env.delete("perpex-eth-usdt-keeper", DEPLOY)
    await env.wait_for(lambda: replicas(env, "keeper") == 2, "keeper recreated")


async def test_disabling_a_component_deletes_its_deployment(start_operator: OperatorFactory):
    env = await start_operator()
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))
    await env.wait_for(lambda: env.get(DEPLOY, "perpex-eth-usdt-funding"), "funding")
    await env.patch("eth-usdt", {"spec": {"funding": {"enabled": False}}})
    await env.wait_for(lambda: env.get(DEPLOY, "perpex-eth-usdt-funding") is None, "funding gone")
    assert env.get(DEPLOY, "perpex-eth-usdt-keeper") is not None


async def test_name_held_by_a_foreign_object_is_a_conflict_and_nothing_is_written(
    start_operator: OperatorFactory,
):
    env = await start_operator()
    foreign = {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "perpex-eth-usdt-keeper", "namespace": NS},
        "spec": {"replicas": 7},
    }
    await env.create(foreign, DEPLOY)
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))
    degraded = await env.wait_for(
        lambda: (c := env.condition("eth-usdt", "Degraded")) and c["status"] == "True" and c,
        "Degraded=True",
    )
    assert degraded["reason"] == "Conflict"
    assert replicas(env, "keeper") == 7
    assert env.names(CM) == [] and env.names(SA) == []
    assert env.get(DEPLOY, "perpex-eth-usdt-funding") is None


async def test_role_binding_for_the_funding_lease_when_configured(
    start_operator: OperatorFactory,
):
    config = OperatorConfig(
        image="perpex:test", status_interval=0.5, workload_cluster_role="perpex-market-workload"
    )
    env = await start_operator(config)
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))
    binding = await env.wait_for(lambda: env.get(RB, "perpex-eth-usdt"), "RoleBinding")
    assert binding["roleRef"]["name"] == "perpex-market-workload"
    assert binding["subjects"] == [
        {"kind": "ServiceAccount", "name": "perpex-eth-usdt", "namespace": NS}
    ]
    await env.delete("eth-usdt")
    await env.wait_for(lambda: env.get(RB, "perpex-eth-usdt") is None, "RoleBinding deleted")


async def test_a_binding_to_another_cluster_role_is_replaced(start_operator: OperatorFactory):
    """The workload ClusterRole was renamed: the market's RoleBinding is deleted and created
    again (its roleRef cannot be patched)."""
    config = OperatorConfig(
        image="perpex:test", status_interval=0.5, workload_cluster_role="perpex-market-workload"
    )
    env = await start_operator(config)
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))
    await env.wait_for(lambda: env.get(RB, "perpex-eth-usdt"), "RoleBinding")
    await env.delete("perpex-eth-usdt", RB)
    old = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {
            "name": "perpex-eth-usdt",
            "namespace": NS,
            "ownerReferences": [
                {
                    "apiVersion": "perpex.io/v1alpha1",
                    "kind": "PerpMarket",
                    "name": "eth-usdt",
                    "uid": UID,
                    "controller": True,
                }
            ],
        },
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "old-workload-role",
        },
        "subjects": [],
    }
    await env.create(old, RB)
    await env.wait_for(
        lambda: (
            (env.get(RB, "perpex-eth-usdt") or {}).get("roleRef", {}).get("name")
            == "perpex-market-workload"
        ),
        "the binding to the current ClusterRole",
    )


async def test_peering_higher_priority_peer_pauses_this_replica(
    start_operator: OperatorFactory, caplog: pytest.LogCaptureFixture
):
    caplog.set_level(logging.INFO, logger="kopf")
    # The chart creates this peering object; replicas announce themselves in its status.
    peering = {
        "apiVersion": "kopf.dev/v1",
        "kind": "ClusterKopfPeering",
        "metadata": {"name": "perpex-operator"},
        "status": {},
    }
    env = await start_operator(peering="perpex-operator", priority=10)
    async with env.kmock.post("/apis/kopf.dev/v1/clusterkopfpeerings", json=peering) as resp:
        assert resp.status < 300

    def peers() -> dict[str, Any]:
        obj = env.kmock.objects[PEERINGS, None, "perpex-operator"]
        return dict(obj.get("status") or {})

    me = await env.wait_for(
        lambda: [p for p, info in peers().items() if info and info.get("priority") == 10],
        "own keep-alive in the peering object",
    )
    assert len(me) == 1

    # Another live replica with a higher priority appears: this one must stand by.
    other = {"status": {"other-replica": {"priority": 100, "lifetime": 60, "lastseen": now_iso()}}}
    peering_path = "/apis/kopf.dev/v1/clusterkopfpeerings/perpex-operator"
    merge = {"Content-Type": "application/merge-patch+json"}
    async with env.kmock.patch(peering_path, json=other, headers=merge) as resp:
        assert resp.status < 300
    await env.wait_for(lambda: "Pausing operations" in caplog.text, "this replica to pause")
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))
    await asyncio.sleep(1.5)  # ample for an active operator (it takes milliseconds)
    assert env.get(DEPLOY, "perpex-eth-usdt-keeper") is None
    assert env.get(CM, "perpex-eth-usdt") is None

    # The other replica goes away: this one resumes and handles the market.
    async with env.kmock.patch(
        peering_path, json={"status": {"other-replica": None}}, headers=merge
    ) as resp:
        assert resp.status < 300
    await env.wait_for(lambda: env.get(DEPLOY, "perpex-eth-usdt-keeper"), "keeper after resume")


async def test_a_setting_dropped_from_the_spec_leaves_the_configmap(
    start_operator: OperatorFactory,
):
    """Moving from explicit addresses to a deployment ConfigMap: the old addresses must go
    (the services prefer them over the deployment file)."""
    env = await start_operator()
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))

    def data() -> dict[str, Any]:
        return dict((env.get(CM, "perpex-eth-usdt") or {}).get("data") or {})

    await env.wait_for(lambda: "POSITION_MANAGER_ADDRESS" in data(), "addresses in the ConfigMap")
    ref = {"name": "chain-deployment", "key": "deployment.json"}
    await env.patch(
        "eth-usdt",
        {
            "spec": {
                "contracts": {
                    "positionManager": None,
                    "positionNFT": None,
                    "deploymentConfigMapRef": ref,
                }
            }
        },
    )
    await env.wait_for(lambda: "DEPLOYMENT_FILE" in data(), "the deployment file in the ConfigMap")
    await env.wait_for(
        lambda: "POSITION_MANAGER_ADDRESS" not in data() and "POSITION_NFT_ADDRESS" not in data(),
        "the old addresses gone",
    )


async def test_the_refresh_timer_reconciles_the_market_as_it_is_now(
    start_operator: OperatorFactory,
):
    """The timer may hold a body from before an update the handler already applied (a
    pause): it reconciles the market as it is now, so the pause is not undone."""
    env = await start_operator()
    await env.create(perpmarket("eth-usdt", market_spec(), uid=UID))
    await env.wait_for(lambda: replicas(env, "keeper") == 2, "keeper running")
    stale = env.get(PM, "eth-usdt")
    assert stale is not None
    await env.patch("eth-usdt", {"spec": {"paused": True}})
    await env.wait_for(lambda: replicas(env, "keeper") == 0, "scaled to zero")
    kube = KubeApi.for_host(env.base)
    try:
        refreshed = await refresh(kube, stale, OperatorConfig(image="perpex:test"), asyncio.Lock())
    finally:
        await kube.close()
    assert refreshed is not None
    fresh, _ = refreshed
    assert fresh["spec"]["paused"] is True
    assert replicas(env, "keeper") == 0 and replicas(env, "funding") == 0
