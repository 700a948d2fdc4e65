"""End to end without a cluster: the real Helm engine installs deploy/helm/perpex into kmock's
Kubernetes API emulation (over HTTP), then the operator under kopf reconciles the PerpMarkets
the chart created (ETH/USDT and BTC/USDT) until they are Ready.

This is the same path as deploy/kind/e2e.sh, minus what only a real cluster has: images,
pods, the Deployment controller (its ready replica counts are written by the test), the
CRD schema enforcement (checked here with the CRD's schema and a JSON Schema validator).
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest
import yaml
from operator_harness import DEPLOY, NS, PM, ROOT, CrdValidator, OperatorEnv, OperatorFactory

HELM_PYTHON = ROOT / ".venv-helm" / "bin" / "python"
HELM_ACTION = ROOT / "tests" / "helm" / "helm_action.py"
CHART = ROOT / "deploy" / "helm" / "perpex"
EXAMPLE_VALUES = CHART / "ci" / "markets-values.yaml"

pytestmark = pytest.mark.skipif(
    not HELM_PYTHON.exists(),
    reason="tool missing: .venv-helm is absent (scripts/bootstrap.sh creates it with helm-sdkpy, which needs "
    "Python >= 3.12): the real Helm engine is unavailable",
)


async def helm_install(env: OperatorEnv, tmp_path: Path, values: dict[str, Any]) -> dict[str, Any]:
    kubeconfig = tmp_path / "kubeconfig.json"
    kubeconfig.write_text(
        json.dumps(
            {
                "apiVersion": "v1",
                "kind": "Config",
                "clusters": [{"name": "emulator", "cluster": {"server": env.base}}],
                "users": [{"name": "test", "user": {"token": "unused"}}],
                "contexts": [{"name": "test", "context": {"cluster": "emulator", "user": "test"}}],
                "current-context": "test",
            }
        )
    )
    values_file = tmp_path / "values.json"
    values_file.write_text(json.dumps(values))
    proc = await asyncio.create_subprocess_exec(
        str(HELM_PYTHON),
        str(HELM_ACTION),
        "install",
        str(CHART),
        str(kubeconfig),
        NS,
        "perpex",
        str(values_file),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        # The release record stays in memory: the emulator does not speak protobuf, which
        # client-go uses for the Secrets of Helm's default storage driver.
        env={**os.environ, "HELM_DRIVER": "memory"},
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=90)
    assert proc.returncode == 0, err.decode()[-2000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert "error" not in result, result["error"]
    assert result["status"] == "deployed"
    return dict(result)


def objects_of(env: OperatorEnv, plural: str) -> list[dict[str, Any]]:
    from operator_harness import _plain

    found = []
    for (resource, _ns, _name), obj in env.kmock.objects.items():  # type: ignore[misc]
        if resource.plural == plural and not obj.deleted:
            found.append(_plain(obj.raw))
    return found


def assert_hardened(deployment: dict[str, Any]) -> None:
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True, name
    assert pod["securityContext"]["runAsUser"] == 10001, name
    for container in pod["containers"]:
        ctx = container["securityContext"]
        assert ctx["readOnlyRootFilesystem"] is True, name
        assert ctx["allowPrivilegeEscalation"] is False, name
        assert ctx["capabilities"]["drop"] == ["ALL"], name
        assert container["livenessProbe"]["httpGet"]["path"] == "/healthz", name
        assert container["readinessProbe"]["httpGet"]["path"] == "/readyz", name
        assert container["resources"]["requests"]["memory"], name
        assert container["resources"]["limits"]["memory"], name
        for var in container.get("env", []):
            assert "PRIVATE_KEY" not in var["name"] or "valueFrom" in var, (name, var["name"])


async def test_helm_install_default_values_renders_hardened_release(
    emulator: OperatorEnv, tmp_path: Path
):
    env = emulator
    result = await helm_install(env, tmp_path, {})
    assert "PerpMarket operator is running" in result["notes"]

    crds = {c["metadata"]["name"] for c in objects_of(env, "customresourcedefinitions")}
    assert {"perpmarkets.perpex.io", "clusterkopfpeerings.kopf.dev"} <= crds
    deployments = {d["metadata"]["name"]: d for d in objects_of(env, "deployments")}
    assert set(deployments) == {"perpex-operator", "perpex-indexer", "perpex-dashboard"}
    for deployment in deployments.values():
        assert_hardened(deployment)
    assert objects_of(env, "perpmarkets") == []

    operator = deployments["perpex-operator"]["spec"]["template"]["spec"]["containers"][0]
    assert operator["args"] == ["operator", "--peering=perpex-operator"]
    op_env = {e["name"]: e.get("value") for e in operator["env"]}
    assert op_env["PERPEX_OPERATOR_IMAGE"] == "perpex:0.1.0"
    assert op_env["PERPEX_OPERATOR_WORKLOAD_CLUSTER_ROLE"] == "perpex-market-workload"
    assert op_env["PERPEX_WORKLOAD_ENV_KAFKA_BOOTSTRAP_SERVERS"]

    indexer = deployments["perpex-indexer"]["spec"]["template"]["spec"]["containers"][0]
    db = next(e for e in indexer["env"] if e["name"] == "DB_URI")
    assert db["valueFrom"]["secretKeyRef"] == {"name": "perpex-db", "key": "dsn"}

    # Least privilege: the operator may not touch Secrets, and nothing is a wildcard.
    (role,) = [
        r for r in objects_of(env, "clusterroles") if r["metadata"]["name"] == "perpex-operator"
    ]
    for rule in role["rules"]:
        assert "secrets" not in rule["resources"]
        assert "*" not in rule["resources"] and "*" not in rule["verbs"]
    (peering,) = objects_of(env, "clusterkopfpeerings")
    assert peering["metadata"]["name"] == "perpex-operator"


async def test_chart_markets_are_reconciled_until_ready(
    emulator: OperatorEnv,
    start_operator: OperatorFactory,
    tmp_path: Path,
    crd_validator: CrdValidator,
):
    values = yaml.safe_load(EXAMPLE_VALUES.read_text())
    env = emulator
    await helm_install(env, tmp_path, values)

    markets = {m["metadata"]["name"]: m for m in objects_of(env, "perpmarkets")}
    assert set(markets) == {"eth-usdt", "btc-usdt"}
    for market in markets.values():
        assert crd_validator.errors(market) == [], market["metadata"]["name"]

    assert {d["metadata"]["name"] for d in objects_of(env, "deployments")} == {
        "perpex-operator",
        "perpex-indexer",
        "perpex-dashboard",
    }
    # The chart's markets were created while no operator ran; one starting now, coordinated
    # through the chart's peering object as in the cluster, picks them up.
    await start_operator(peering="perpex-operator", priority=1)
    expected = {"eth-usdt": {"keeper": 1, "funding": 1}, "btc-usdt": {"keeper": 1, "funding": 1}}
    for market, components in expected.items():
        for component, count in components.items():
            name = f"perpex-{market}-{component}"
            dep = await env.wait_for(lambda n=name: env.get(DEPLOY, n), name)
            assert dep["spec"]["replicas"] == count
            # The Deployment controller and kubelet are not emulated: report pods ready.
            await env.patch(name, {"status": {"readyReplicas": count}}, DEPLOY)
    for market in expected:
        await env.wait_for(
            lambda m=market: (c := env.condition(m, "Ready")) and c["status"] == "True",
            f"{market} Ready",
            within=20,
        )
    eth_keeper = env.get(DEPLOY, "perpex-eth-usdt-keeper")
    assert eth_keeper is not None
    volumes = eth_keeper["spec"]["template"]["spec"]["volumes"]
    assert {
        "name": "deployment",
        "configMap": {
            "name": "perpex-deployment",
            "items": [{"key": "deployment.json", "path": "deployment.json"}],
        },
    } in volumes
    assert env.get(PM, "btc-usdt")["status"]["keepers"] == "1/1"  # type: ignore[index]
