"""The PerpMarket CRD's own openAPIV3Schema accepts valid markets and rejects invalid ones,
and the operator's spec validation agrees with it on every example."""

from __future__ import annotations

import copy
from typing import Any

import pytest
import yaml
from operator_harness import ADDR_NFT, ADDR_PM, CrdValidator, load_crd, market_spec, perpmarket

from services.operator import spec as specmod
from services.operator.spec import SpecError, parse_spec


def _with(path: str, value: Any, base: dict[str, Any] | None = None) -> dict[str, Any]:
    """market_spec() with one field (dotted path) set; value None deletes it."""
    spec = copy.deepcopy(base or market_spec())
    node = spec
    *parents, last = path.split(".")
    for key in parents:
        node = node.setdefault(key, {})
    if value is None:
        node.pop(last, None)
    else:
        node[last] = value
    return spec


VALID: dict[str, dict[str, Any]] = {
    "secret rpc, inline addresses": market_spec(),
    "plain rpc url": _with("rpc", {"url": "http://anvil.perpex.svc:8545"}),
    "websocket rpc url with path": _with("rpc", {"url": "wss://node.example.org/ws/v1"}),
    "deployment configmap": _with(
        "contracts", {"deploymentConfigMapRef": {"name": "perpex-deployment"}}
    ),
    "deployment configmap with key": _with(
        "contracts", {"deploymentConfigMapRef": {"name": "dep", "key": "sepolia.json"}}
    ),
    "keeper disabled needs no wallet": _with("keeper", {"enabled": False}),
    "funding disabled needs no wallet": _with("funding", {"enabled": False, "replicas": 0}),
    "all knobs": market_spec(
        "BTC/USDT",
        keeper={
            "enabled": True,
            "replicas": 10,
            "walletSecretRef": {"name": "w", "key": "private-key"},
            "gasMultiplier": 1.5,
            "maxRetries": 0,
            "minBalanceEth": "0.000000000000000001",
            "pollIntervalMs": 50,
        },
        funding={
            "enabled": True,
            "replicas": 3,
            "intervalSeconds": 86400,
            "walletSecretRef": {"name": "w", "key": "funding.key"},
        },
        resources={"requests": {"cpu": "100m", "memory": "64Mi"}, "limits": {"cpu": "1"}},
        paused=True,
    ),
    "integer gas multiplier": _with("keeper.gasMultiplier", 2),
}

INVALID: dict[str, dict[str, Any]] = {
    "lowercase pair": _with("pair", "eth/usdt"),
    "pair without slash": _with("pair", "ETHUSDT"),
    "pair with dash": _with("pair", "ETH-USDT"),
    "missing pair": _with("pair", None),
    "chain id zero": _with("chainId", 0),
    "chain id as string": _with("chainId", "31337"),
    "missing rpc": _with("rpc", None),
    "rpc with both url and secret": _with(
        "rpc", {"url": "http://a:1", "secretRef": {"name": "s", "key": "k"}}
    ),
    "rpc empty": _with("rpc", {}),
    "rpc url with credentials": _with("rpc", {"url": "https://user:pass@node.example.org"}),
    "rpc url ftp": _with("rpc", {"url": "ftp://node.example.org"}),
    "rpc secret without key": _with("rpc", {"secretRef": {"name": "s"}}),
    "rpc secret bad name": _with("rpc", {"secretRef": {"name": "Bad_Name", "key": "k"}}),
    "missing contracts": _with("contracts", None),
    "short address": _with("contracts.positionManager", "0x1234"),
    "address without 0x": _with("contracts.positionNFT", "22" * 20),
    "only one address": _with("contracts", {"positionManager": ADDR_PM}),
    "addresses and configmap": _with(
        "contracts",
        {
            "positionManager": ADDR_PM,
            "positionNFT": ADDR_NFT,
            "deploymentConfigMapRef": {"name": "dep"},
        },
    ),
    "keeper replicas 11": _with("keeper.replicas", 11),
    "keeper replicas negative": _with("keeper.replicas", -1),
    "keeper enabled without wallet": _with("keeper.walletSecretRef", None),
    "funding enabled without wallet": _with("funding", {"intervalSeconds": 600}),
    "gas multiplier below 1": _with("keeper.gasMultiplier", 0.5),
    "max retries above 100": _with("keeper.maxRetries", 101),
    "min balance as number": _with("keeper.minBalanceEth", 0.05),
    "min balance negative": _with("keeper.minBalanceEth", "-1"),
    "poll interval too small": _with("keeper.pollIntervalMs", 10),
    "funding interval too short": _with("funding.intervalSeconds", 10),
    "funding replicas 4": _with("funding.replicas", 4),
    "paused as string": _with("paused", "yes"),
    "bad cpu quantity": _with("resources", {"requests": {"cpu": "lots"}}),
    "inline private key in keeper": _with("keeper.privateKey", "0x" + "ab" * 32),
    "inline key inside the secret ref": _with(
        "keeper.walletSecretRef", {"name": "w", "key": "k", "value": "0x" + "ab" * 32}
    ),
    "inline private key at top level": _with("privateKey", "ab" * 32),
    "mnemonic in funding": _with("funding.mnemonic", "test test test"),
}


@pytest.mark.parametrize("spec", VALID.values(), ids=VALID.keys())
def test_crd_schema_accepts_valid_markets(crd_validator: CrdValidator, spec: dict[str, Any]):
    assert crd_validator.errors(perpmarket("eth-usdt", spec)) == []


@pytest.mark.parametrize("spec", INVALID.values(), ids=INVALID.keys())
def test_crd_schema_rejects_invalid_markets(crd_validator: CrdValidator, spec: dict[str, Any]):
    assert crd_validator.errors(perpmarket("eth-usdt", spec)) != []


@pytest.mark.parametrize("spec", VALID.values(), ids=VALID.keys())
def test_operator_validation_accepts_what_the_crd_accepts(spec: dict[str, Any]):
    parse_spec(spec, "eth-usdt")


@pytest.mark.parametrize("spec", INVALID.values(), ids=INVALID.keys())
def test_operator_validation_rejects_what_the_crd_rejects(spec: dict[str, Any]):
    with pytest.raises(SpecError):
        parse_spec(spec, "eth-usdt")


def test_schema_rejects_unknown_fields_like_strict_kubectl(crd_validator: CrdValidator):
    errors = crd_validator.errors(perpmarket("m", _with("keeper.walletKey", "x")))
    assert any("walletKey" in e for e in errors)


def test_crd_defaults_match_the_operator_defaults(crd_validator: CrdValidator):
    minimal = {
        "pair": "ETH/USDT",
        "chainId": 1,
        "rpc": {"url": "http://node:8545"},
        "contracts": {"deploymentConfigMapRef": {"name": "dep"}},
        "keeper": {"walletSecretRef": {"name": "w", "key": "k"}},
        "funding": {"walletSecretRef": {"name": "w", "key": "k"}},
    }
    defaulted = crd_validator.defaulted(perpmarket("m", minimal))["spec"]
    assert crd_validator.errors(perpmarket("m", minimal)) == []
    keeper = {k: v for k, v in defaulted["keeper"].items() if k != "walletSecretRef"}
    funding = {k: v for k, v in defaulted["funding"].items() if k != "walletSecretRef"}
    assert keeper == specmod.KEEPER_DEFAULTS
    assert funding == specmod.FUNDING_DEFAULTS
    assert defaulted["paused"] is specmod.SPEC_DEFAULTS["paused"]
    assert defaulted["resources"] == specmod.DEFAULT_RESOURCES
    assert defaulted["contracts"]["deploymentConfigMapRef"]["key"] == specmod.DEFAULT_DEPLOYMENT_KEY
    # The operator, given the undefaulted spec, arrives at the same values.
    parsed = parse_spec(minimal, "m")
    assert parsed.keeper.replicas == keeper["replicas"]
    assert parsed.keeper.gas_multiplier == keeper["gasMultiplier"]
    assert parsed.keeper.min_balance_eth == keeper["minBalanceEth"]
    assert parsed.funding.interval_seconds == funding["intervalSeconds"]
    assert parsed.resources == defaulted["resources"]
    assert parsed.deployment_config_map is not None
    assert parsed.deployment_config_map.key == "deployment.json"


def test_crd_shape_status_subresource_and_printer_columns():
    crd = load_crd()
    assert crd["metadata"]["name"] == "perpmarkets.perpex.io"
    assert crd["spec"]["group"] == "perpex.io"
    (version,) = crd["spec"]["versions"]
    assert version["name"] == "v1alpha1" and version["served"] and version["storage"]
    assert version["subresources"] == {"status": {}}
    columns = {c["name"].upper(): c["jsonPath"] for c in version["additionalPrinterColumns"]}
    assert columns["PAIR"] == ".spec.pair"
    assert columns["READY"] == '.status.conditions[?(@.type=="Ready")].status'
    assert columns["KEEPERS"] == ".status.keepers"
    assert columns["AGE"] == ".metadata.creationTimestamp"
    status = version["schema"]["openAPIV3Schema"]["properties"]["status"]["properties"]
    assert status["conditions"]["items"]["properties"]["type"]["enum"] == [
        "Ready",
        "Progressing",
        "Degraded",
    ]
    assert {"observedGeneration", "keeper", "funding", "keepers"} <= set(status)


def _walk(node: Any, path: str = "") -> list[tuple[str, dict[str, Any]]]:
    found: list[tuple[str, dict[str, Any]]] = []
    if isinstance(node, dict):
        found.append((path, node))
        for key, value in node.items():
            found += _walk(value, f"{path}/{key}")
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found += _walk(value, f"{path}[{index}]")
    return found


def test_crd_schema_is_structural():
    """The rules the API server enforces on CRD schemas that a JSON Schema validator
    would not notice: no $ref, a type on every field schema, nothing typed or defaulted
    inside oneOf/anyOf/allOf/not, and no additionalProperties next to properties."""
    schema = load_crd()["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema):
        assert "$ref" not in node, path
        in_junctor = any(j in path for j in ("/oneOf", "/anyOf", "/allOf", "/not"))
        if in_junctor:
            for forbidden in ("type", "default", "description", "additionalProperties"):
                assert forbidden not in node, f"{path}: {forbidden} inside a junctor"
            continue
        if path.endswith(("/properties", "/x-kubernetes-validations")) or "/default" in path:
            continue
        if "type" in node or "properties" in node or "items" in node:
            assert "type" in node, f"{path}: schema without type"
        assert not ("properties" in node and "additionalProperties" in node), path


def test_shipped_example_markets_pass_the_crd_schema_and_the_operator(crd_validator: CrdValidator):
    """The markets in deploy/kind/markets.yaml and the chart's ci/markets-values.yaml."""
    from operator_harness import ROOT

    kind_markets = list(yaml.safe_load_all((ROOT / "deploy/kind/markets.yaml").read_text()))
    values = yaml.safe_load((ROOT / "deploy/helm/perpex/ci/markets-values.yaml").read_text())
    chart_markets = [perpmarket(m["name"], m["spec"]) for m in values["markets"]]
    markets = kind_markets + chart_markets
    assert {m["spec"]["pair"] for m in markets} == {"ETH/USDT", "BTC/USDT"}
    for market in markets:
        assert crd_validator.errors(market) == [], market["metadata"]["name"]
        parse_spec(market["spec"], market["metadata"]["name"])
    # One wallet per market and role, as docs/kubernetes.md recommends.
    for group in (kind_markets, chart_markets):
        wallets = [
            m["spec"][role]["walletSecretRef"]["name"]
            for m in group
            for role in ("keeper", "funding")
        ]
        assert len(wallets) == len(set(wallets))
