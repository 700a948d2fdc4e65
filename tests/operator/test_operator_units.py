"""Pure reconcile logic, without any cluster: spec, manifests, diff decisions, status, config."""

from __future__ import annotations

import asyncio
import copy
from typing import Any

import pytest
from click.testing import CliRunner
from operator_harness import ADDR_NFT, ADDR_PM, market_spec

from services.operator import manifests as mf
from services.operator.config import OperatorConfig, OperatorConfigError
from services.operator.diff import Action, contains, decide, merge_patch, owned_by
from services.operator.spec import KeyRef, SpecError, parse_spec
from services.operator.status import ComponentObservation, Outcome, compute_status, status_changed

OWNER = mf.Owner(name="eth-usdt", namespace="markets", uid="uid-1")
CONFIG = OperatorConfig(
    image="perpex:1",
    workload_env={"KAFKA_BOOTSTRAP_SERVERS": "kafka:9092", "LOG_LEVEL": "INFO"},
    db_secret=KeyRef("perpex-db", "dsn"),
)


def spec(**overrides: Any):
    return parse_spec(market_spec(**overrides), "eth-usdt")


# ---------------------------------------------------------------- spec


def test_spec_defaults_fill_in():
    parsed = parse_spec(
        {
            "pair": "ETH/USDT",
            "chainId": 1,
            "rpc": {"url": "https://node.example/v1"},
            "contracts": {"positionManager": ADDR_PM, "positionNFT": ADDR_NFT},
            "keeper": {"enabled": False},
            "funding": {"enabled": False},
        },
        "m",
    )
    assert parsed.keeper.replicas == 1 and parsed.keeper.wallet is None
    assert parsed.funding.interval_seconds == 28800  # the contract's 8 hours
    assert parsed.paused is False
    assert parsed.resources["requests"] == {"cpu": "50m", "memory": "128Mi"}


def test_spec_errors_list_every_problem_without_values():
    secret_looking = "0x" + "ab" * 32
    with pytest.raises(SpecError) as err:
        parse_spec({"pair": "x", "chainId": -1, "keeper": {"privateKey": secret_looking}}, "m")
    text = str(err.value)
    for path in (
        "spec.pair",
        "spec.chainId",
        "spec.rpc",
        "spec.contracts",
        "spec.keeper.privateKey",
    ):
        assert path in text
    assert secret_looking not in text and "ab" * 32 not in text


@pytest.mark.parametrize("name", ["Bad", "a" * 41, "-x", "x_y"])
def test_market_name_must_be_a_short_dns_label(name: str):
    with pytest.raises(SpecError, match=r"metadata\.name"):
        parse_spec(market_spec(), name)


def test_key_material_is_rejected_anywhere_by_shape():
    with pytest.raises(SpecError, match="looks like a private key"):
        parse_spec(market_spec(notes=["ab" * 32]), "m")


# ---------------------------------------------------------------- manifests


def test_manifests_are_deterministic_and_owned():
    one = mf.desired_state(OWNER, spec(), CONFIG)
    two = mf.desired_state(OWNER, spec(), CONFIG)
    assert one == two
    for obj in (one.config_map, one.service_account, *one.deployments.values()):
        assert obj is not None
        assert obj["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
        assert obj["metadata"]["labels"]["perpex.io/market"] == "eth-usdt"
    assert one.role_binding is None  # no workload ClusterRole configured


def funding_env(deployment: dict[str, Any]) -> list[dict[str, Any]]:
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    return list(container["env"])


def test_keeper_deployment_env_and_db_secret():
    keeper = mf.deployment(OWNER, spec(), CONFIG, "keeper")
    container = keeper["spec"]["template"]["spec"]["containers"][0]
    env = {e["name"]: e for e in container["env"]}
    assert env["DB_URI"]["valueFrom"]["secretKeyRef"] == {"name": "perpex-db", "key": "dsn"}
    assert env["KEEPER_PRIVATE_KEY"]["valueFrom"]["secretKeyRef"]["name"] == "keeper-wallet"
    assert container["image"] == "perpex:1"
    assert keeper["spec"]["selector"]["matchLabels"] == {
        "perpex.io/market": "eth-usdt",
        "app.kubernetes.io/component": "keeper",
    }
    assert keeper["spec"]["template"]["spec"]["automountServiceAccountToken"] is False
    funding = mf.deployment(OWNER, spec(), CONFIG, "funding")
    assert funding["spec"]["template"]["spec"]["automountServiceAccountToken"] is True
    assert funding["spec"]["strategy"]["rollingUpdate"]["maxSurge"] == 0
    # one Lease per market: two markets of one pair (other chains) elect their own leaders
    lease = {e["name"]: e.get("value") for e in funding_env(funding)}["LEASE_NAME"]
    other = mf.deployment(mf.Owner("eth-usdt-arb", "markets", "u2"), spec(), CONFIG, "funding")
    assert lease == "perpex-eth-usdt-funding"
    assert {e["name"]: e.get("value") for e in funding_env(other)}["LEASE_NAME"] != lease


def test_config_map_carries_workload_env_and_inline_rpc():
    data = mf.config_data(spec(rpc={"url": "http://anvil:8545"}), CONFIG)
    assert data["RPC_URL"] == "http://anvil:8545"
    assert data["KAFKA_BOOTSTRAP_SERVERS"] == "kafka:9092"
    assert data["MARKETS"] == "ETH/USDT"


def test_deployment_configmap_is_mounted_as_a_file():
    parsed = spec(contracts={"deploymentConfigMapRef": {"name": "dep", "key": "chain.json"}})
    data = mf.config_data(parsed, CONFIG)
    assert data["DEPLOYMENT_FILE"] == "/etc/perpex/deployment/chain.json"
    assert "POSITION_MANAGER_ADDRESS" not in data
    pod = mf.deployment(OWNER, parsed, CONFIG, "keeper")["spec"]["template"]["spec"]
    assert {
        "name": "deployment",
        "configMap": {"name": "dep", "items": [{"key": "chain.json", "path": "chain.json"}]},
    } in pod["volumes"]


def test_config_change_changes_the_pod_template_hash():
    a = mf.deployment(OWNER, spec(), CONFIG, "keeper")
    b = mf.deployment(OWNER, spec(chainId=1), CONFIG, "keeper")
    key = mf.CONFIG_HASH_ANNOTATION
    assert (
        a["spec"]["template"]["metadata"]["annotations"][key]
        != (b["spec"]["template"]["metadata"]["annotations"][key])
    )


def test_paused_and_disabled():
    paused = mf.desired_state(OWNER, spec(paused=True), CONFIG)
    assert all(d is not None and d["spec"]["replicas"] == 0 for d in paused.deployments.values())
    disabled = mf.desired_state(OWNER, spec(funding={"enabled": False}), CONFIG)
    assert disabled.deployments["funding"] is None


# ---------------------------------------------------------------- diff


def test_contains_tolerates_server_defaults_but_not_changes():
    desired = mf.deployment(OWNER, spec(), CONFIG, "keeper")
    live = copy.deepcopy(desired)
    live["metadata"].update(uid="x", resourceVersion="9", generation=3)
    live["status"] = {"readyReplicas": 2}
    live["spec"]["progressDeadlineSeconds"] = 600
    live["spec"]["template"]["spec"]["containers"][0]["terminationMessagePath"] = "/dev/x"
    live["spec"]["template"]["spec"]["containers"][0]["env"][-1]["value"] = "changed"
    assert not contains(live, desired)  # a changed env entry is a difference
    live["spec"]["template"]["spec"]["containers"][0]["env"] = copy.deepcopy(
        desired["spec"]["template"]["spec"]["containers"][0]["env"]
    )
    assert contains(live, desired)
    live["spec"]["replicas"] = 5
    assert not contains(live, desired)


def test_contains_compares_resource_quantities_canonically():
    desired = {"resources": {"requests": {"cpu": "1000m", "memory": "1Gi"}}, "env": "1000m"}
    live = {"resources": {"requests": {"cpu": "1", "memory": "1024Mi"}}, "env": "1000m"}
    assert contains(live, desired)
    assert not contains({**live, "env": "1"}, desired)  # only under `resources`
    assert not contains({**live, "resources": {"requests": {"cpu": "2", "memory": "1Gi"}}}, desired)


def test_contains_compares_lists_by_length_and_bools_strictly():
    assert not contains([1, 2, 3], [1, 2])
    assert not contains({"a": 1}, {"a": True})
    assert contains({"a": 1.0}, {"a": 1})


def test_decisions():
    desired = mf.config_map(OWNER, spec(), CONFIG)
    assert decide(desired, None, OWNER).action is Action.CREATE
    assert decide(desired, copy.deepcopy(desired), OWNER).action is Action.NOOP
    changed = copy.deepcopy(desired)
    changed["data"]["CHAIN_ID"] = "5"
    assert decide(desired, changed, OWNER).action is Action.PATCH
    assert decide(None, desired, OWNER).action is Action.DELETE
    assert decide(None, None, OWNER).action is Action.NOOP
    foreign = {"metadata": {"name": desired["metadata"]["name"]}, "data": {}}
    assert decide(desired, foreign, OWNER).action is Action.CONFLICT
    assert decide(None, foreign, OWNER).action is Action.NOOP  # never delete what is not ours
    other = mf.Owner(name="eth-usdt", namespace="markets", uid="uid-2")  # recreated market
    assert not owned_by(desired, other)


def test_settings_dropped_from_the_configmap_are_removed():
    # the market moves from explicit addresses to a deployment ConfigMap
    before = mf.config_map(OWNER, spec(), CONFIG)
    assert "POSITION_MANAGER_ADDRESS" in before["data"]
    ref = {"deploymentConfigMapRef": {"name": "dep", "key": "chain.json"}}
    desired = mf.config_map(OWNER, spec(contracts=ref), CONFIG)
    assert decide(desired, before, OWNER).action is Action.PATCH
    body = merge_patch(desired, before)
    assert body["data"]["POSITION_MANAGER_ADDRESS"] is None  # a merge patch's "delete"
    assert body["data"]["POSITION_NFT_ADDRESS"] is None
    assert {k: v for k, v in body["data"].items() if v is not None} == desired["data"]
    assert None not in merge_patch(desired, desired)["data"].values()


def test_a_changed_role_ref_replaces_the_binding():
    """roleRef is immutable (the API server answers 422 to a patch): delete and create."""
    desired = mf.role_binding(OWNER, "perpex-market-workload")
    live = copy.deepcopy(desired)
    assert decide(desired, live, OWNER).action is Action.NOOP
    live["roleRef"]["name"] = "old-workload-role"
    assert decide(desired, live, OWNER).action is Action.REPLACE
    live = copy.deepcopy(desired)
    live["subjects"][0]["name"] = "someone-else"
    assert decide(desired, live, OWNER).action is Action.PATCH


def test_merge_patch_leaves_identity_alone():
    body = merge_patch(mf.config_map(OWNER, spec(), CONFIG))
    assert "apiVersion" not in body and "kind" not in body
    assert "name" not in body["metadata"] and "namespace" not in body["metadata"]
    assert body["metadata"]["ownerReferences"]


# ---------------------------------------------------------------- status


def comp(enabled: bool, desired: int, ready: int | None, **status: Any) -> ComponentObservation:
    dep = None if ready is None else {"status": {"readyReplicas": ready, **status}}
    return ComponentObservation(enabled=enabled, desired_replicas=desired, deployment=dep)


def conds(status: dict[str, Any]) -> dict[str, tuple[str, str]]:
    return {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]}


def test_status_ready_progressing_degraded():
    ready = compute_status(
        Outcome(components={"keeper": comp(True, 2, 2), "funding": comp(True, 1, 1)}), 4
    )
    assert conds(ready) == {
        "Ready": ("True", "AllReplicasReady"),
        "Progressing": ("False", "RolledOut"),
        "Degraded": ("False", "AsExpected"),
    }
    assert ready["observedGeneration"] == 4 and ready["keepers"] == "2/2"
    rolling = compute_status(
        Outcome(components={"keeper": comp(True, 2, 1), "funding": comp(False, 1, None)}), 4
    )
    assert conds(rolling)["Ready"] == ("False", "RollingOut")
    assert conds(rolling)["Progressing"] == ("True", "RollingOut")
    assert rolling["funding"] == {"enabled": False, "replicas": 0, "readyReplicas": 0}
    stuck = comp(
        True,
        1,
        0,
        conditions=[
            {
                "type": "Progressing",
                "status": "False",
                "reason": "ProgressDeadlineExceeded",
                "message": "slow",
            },
        ],
    )
    failed = compute_status(Outcome(components={"keeper": stuck}), 1)
    assert conds(failed)["Degraded"] == ("True", "RolloutFailed")


def test_status_invalid_conflict_error_paused():
    assert conds(compute_status(Outcome(invalid=["spec.pair: bad"]), 1))["Degraded"] == (
        "True",
        "InvalidSpec",
    )
    assert conds(compute_status(Outcome(conflict="taken"), 1))["Degraded"] == ("True", "Conflict")
    assert conds(compute_status(Outcome(error="HTTP 500"), 1))["Degraded"] == (
        "True",
        "ReconcileError",
    )
    paused = compute_status(Outcome(paused=True, components={"keeper": comp(True, 0, 0)}), 1)
    assert conds(paused)["Ready"] == ("False", "Paused")


def test_last_transition_time_only_moves_on_flips():
    first = compute_status(Outcome(components={"keeper": comp(True, 1, 0)}), 1, now="T1")
    same = compute_status(
        Outcome(components={"keeper": comp(True, 1, 0)}), 1, first["conditions"], now="T2"
    )
    assert [c["lastTransitionTime"] for c in same["conditions"]] == ["T1", "T1", "T1"]
    assert not status_changed(first, same)
    flipped = compute_status(
        Outcome(components={"keeper": comp(True, 1, 1)}), 1, same["conditions"], now="T3"
    )
    times = {c["type"]: c["lastTransitionTime"] for c in flipped["conditions"]}
    assert times == {"Ready": "T3", "Progressing": "T3", "Degraded": "T1"}
    assert status_changed(same, flipped)


# ---------------------------------------------------------------- config and CLI


def test_operator_config_from_env():
    config = OperatorConfig.from_env(
        {
            "PERPEX_OPERATOR_IMAGE": "registry/perpex:2",
            "PERPEX_OPERATOR_STATUS_INTERVAL": "5",
            "PERPEX_OPERATOR_DB_SECRET_NAME": "db",
            "PERPEX_OPERATOR_IMAGE_PULL_SECRETS": "a, b",
            "PERPEX_WORKLOAD_ENV_KAFKA_TOPIC": "t",
            "PERPEX_WORKLOAD_ENV_OTEL_EXPORTER_OTLP_ENDPOINT": "",
        }
    )
    assert config.image == "registry/perpex:2" and config.status_interval == 5
    assert config.db_secret == KeyRef("db", "dsn")
    assert config.image_pull_secrets == ("a", "b")
    assert dict(config.workload_env) == {"KAFKA_TOPIC": "t"}


@pytest.mark.parametrize(
    "env",
    [
        {"PERPEX_WORKLOAD_ENV_KEEPER_PRIVATE_KEY": "0x1"},
        {"PERPEX_WORKLOAD_ENV_DB_URI": "postgresql://u:p@h/d"},
        {"PERPEX_OPERATOR_IMAGE_PULL_POLICY": "Sometimes"},
        {"PERPEX_OPERATOR_STATUS_INTERVAL": "never"},
    ],
)
def test_operator_config_refuses_secrets_and_nonsense(env: dict[str, str]):
    with pytest.raises(OperatorConfigError):
        OperatorConfig.from_env(env)


def test_cli_operator_command_is_wired():
    from perpex_cli.main import cli

    result = CliRunner().invoke(cli, ["operator", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--namespace", "--peering", "--standalone", "--priority"):
        assert option in result.output


def test_cli_exits_2_on_bad_config(monkeypatch: pytest.MonkeyPatch):
    from services.operator.cli import operator

    monkeypatch.setenv("PERPEX_OPERATOR_IMAGE_PULL_POLICY", "Sometimes")
    result = CliRunner().invoke(operator, [])
    assert result.exit_code == 2
    assert "PERPEX_OPERATOR_IMAGE_PULL_POLICY" in result.output


async def test_health_endpoints():
    import aiohttp

    from services.operator.health import HealthServer

    ready = asyncio.Event()
    server = HealthServer(ready, host="127.0.0.1", port=0)
    await server.start()
    try:
        port = server.bound_port
        async with aiohttp.ClientSession() as session:
            async with session.get(f"http://127.0.0.1:{port}/healthz") as resp:
                assert resp.status == 200
            async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 503
            ready.set()
            async with session.get(f"http://127.0.0.1:{port}/readyz") as resp:
                assert resp.status == 200
    finally:
        await server.stop()
