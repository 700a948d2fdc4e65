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
from services.operator.diff import ChildAction, contains, decide, merge_patch, owned_by
from services.operator.spec import KeyRef, SpecError, parse_spec
from services.operator.status import (
    ComponentObservation,
    ReconcileOutcome,
    compute_status,
    status_changed,
)

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
    assert decide(desired, None, OWNER).action is ChildAction.CREATE
    assert decide(desired, copy.deepcopy(desired), OWNER).action is ChildAction.NOOP
    changed = copy.deepcopy(desired)
    changed["data"]["CHAIN_ID"] = "5"
    assert decide(desired, changed, OWNER).action is ChildAction.PATCH
    assert decide(None, desired, OWNER).action is ChildAction.DELETE
    assert decide(None, None, OWNER).action is ChildAction.NOOP
    foreign = {"metadata": {"name": desired["metadata"]["name"]}, "data": {}}
    assert decide(desired, foreign, OWNER).action is ChildAction.CONFLICT
    assert decide(None, foreign, OWNER).action is ChildAction.NOOP  # never delete what is not ours
    other = mf.Owner(name="eth-usdt", namespace="markets", uid="uid-2")  # recreated market
    assert not owned_by(desired, other)


def test_settings_dropped_from_the_configmap_are_removed():
    # the market moves from explicit addresses to a deployment ConfigMap
    before = mf.config_map(OWNER, spec(), CONFIG)
    assert "POSITION_MANAGER_ADDRESS" in before["data"]
    ref = {"deploymentConfigMapRef": {"name": "dep", "key": "chain.json"}}
    desired = mf.config_map(OWNER, spec(contracts=ref), CONFIG)
    assert decide(desired, before, OWNER).action is ChildAction.PATCH
    body = merge_patch(desired, before)
    assert body["data"]["POSITION_MANAGER_ADDRESS"] is None  # a merge patch's "delete"
    assert body["data"]["POSITION_NFT_ADDRESS"] is None
    assert {k: v for k, v in body["data"].items() if v is not None} == desired["data"]
    assert None not in merge_patch(desired, desired)["data"].values()


def test_a_changed_role_ref_replaces_the_binding():
    """roleRef is immutable (the API server answers 422 to a patch): delete and create."""
    desired = mf.role_binding(OWNER, "perpex-market-workload")
    live = copy.deepcopy(desired)
    assert decide(desired, live, OWNER).action is ChildAction.NOOP
    live["roleRef"]["name"] = "old-workload-role"
    assert decide(desired, live, OWNER).action is ChildAction.REPLACE
    live = copy.deepcopy(desired)
    live["subjects"][0]["name"] = "someone-else"
    assert decide(desired, live, OWNER).action is ChildAction.PATCH


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
        ReconcileOutcome(components={"keeper": comp(True, 2, 2), "funding": comp(True, 1, 1)}), 4
    )
    assert conds(ready) == {
        "Ready": ("True", "AllReplicasReady"),
        "Progressing": ("False", "RolledOut"),
        "Degraded": ("False", "AsExpected"),
    }
    assert ready["observedGeneration"] == 4 and ready["keepers"] == "2/2"
    rolling = compute_status(
        ReconcileOutcome(components={"keeper": comp(True, 2, 1), "funding": comp(False, 1, None)}),
        4,
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
    failed = compute_status(ReconcileOutcome(components={"keeper": stuck}), 1)
    assert conds(failed)["Degraded"] == ("True", "RolloutFailed")


def test_status_invalid_conflict_error_paused():
    assert conds(compute_status(ReconcileOutcome(invalid=["spec.pair: bad"]), 1))["Degraded"] == (
        "True",
        "InvalidSpec",
    )
    assert conds(compute_status(ReconcileOutcome(conflict="taken"), 1))["Degraded"] == (
        "True",
        "Conflict",
    )
    assert conds(compute_status(ReconcileOutcome(error="HTTP 500"), 1))["Degraded"] == (
        "True",
        "ReconcileError",
    )
    paused = compute_status(
        ReconcileOutcome(paused=True, components={"keeper": comp(True, 0, 0)}), 1
    )
    assert conds(paused)["Ready"] == ("False", "Paused")


def test_last_transition_time_only_moves_on_flips():
    first = compute_status(ReconcileOutcome(components={"keeper": comp(True, 1, 0)}), 1, now="T1")
    same = compute_status(
        ReconcileOutcome(components={"keeper": comp(True, 1, 0)}), 1, first["conditions"], now="T2"
    )
    assert [c["lastTransitionTime"] for c in same["conditions"]] == ["T1", "T1", "T1"]
    assert not status_changed(first, same)
    flipped = compute_status(
        ReconcileOutcome(components={"keeper": comp(True, 1, 1)}), 1, same["conditions"], now="T3"
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


async def test_health_endpoints_follow_kopf_start_and_stop():
    """The operator's probes are the shared health server's (shared/health.py): alive at
    once, ready only once kopf has started, not ready again once stopping."""
    import logging
    import signal

    import aiohttp

    from perpex_dev.devstack.ports import free_port
    from services.operator.cli import _follow_kopf
    from shared.health import HealthState, serve_health
    from shared.service import Service

    state = HealthState()
    svc = Service("operator", logging.getLogger("test"), asyncio.Event(), state)
    port = free_port()
    server = asyncio.create_task(serve_health(state, port, "127.0.0.1"))
    kopf_ready = asyncio.Event()
    follow = asyncio.create_task(_follow_kopf(svc, kopf_ready))
    loop = asyncio.get_running_loop()
    try:
        async with aiohttp.ClientSession() as session:

            async def status(path: str) -> int:
                for _ in range(100):
                    try:
                        async with session.get(f"http://127.0.0.1:{port}{path}") as resp:
                            return resp.status
                    except aiohttp.ClientConnectionError:
                        await asyncio.sleep(0.05)
                raise AssertionError("the health server did not start")

            assert await status("/healthz") == 200
            assert await status("/readyz") == 503
            kopf_ready.set()
            await asyncio.sleep(0.05)
            assert await status("/readyz") == 200
            svc.stop.set()
            await asyncio.wait_for(follow, 5)
            assert await status("/readyz") == 503
            assert await status("/healthz") == 200
    finally:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
        follow.cancel()
        server.cancel()
        await asyncio.gather(follow, server, return_exceptions=True)
