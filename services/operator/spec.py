"""PerpMarket spec: parsing, defaulting and validation, with no I/O.

The CRD's OpenAPI schema (deploy/helm/perpex/crds/perpmarkets.perpex.io.yaml) is the first
line of defence on a real API server. The operator validates again here because it must not
trust its input (an API server with the CRD installed by hand, an older CRD, or a test
emulator applies no schema) and because some rules cannot be said in a structural schema.
The defaults below mirror the CRD's; a unit test keeps the two in step.

`parse_spec()` either returns a fully defaulted `MarketSpec` or raises `SpecError` listing
every problem as `field.path: reason`. Nothing in a spec is secret (keys only come from
Secret references), yet the messages still never echo values, only field paths.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

PAIR_RE = re.compile(r"^[A-Z0-9]{2,12}/[A-Z0-9]{2,12}$")
ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
# http(s)/ws(s) without user:password@ (credentials belong in a Secret, use rpc.secretRef).
RPC_URL_RE = re.compile(r"^(https?|wss?)://[^\s/@]+(/\S*)?$")
# DNS-1123 subdomain, as Kubernetes requires for Secret and ConfigMap names.
DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
# Data keys of Secrets and ConfigMaps.
DATA_KEY_RE = re.compile(r"^[-._a-zA-Z0-9]+$")
DECIMAL_RE = re.compile(r"^[0-9]{1,12}(\.[0-9]{1,18})?$")
QUANTITY_RE = re.compile(r"^[0-9]+(\.[0-9]+)?(m|Ki|Mi|Gi|Ti|k|M|G|T)?$")
# Object names: the market name prefixes every owned object and is a label value.
MARKET_NAME_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
MAX_MARKET_NAME = 40
# Keys that would carry key material inline. Wallets come only from Secret references.
FORBIDDEN_KEY_RE = re.compile(r"(?i)^(private[-_]?key|privkey|mnemonic|seed[-_]?phrase|keystore)$")
HEX_KEY_RE = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")

DEFAULT_RESOURCES: dict[str, dict[str, str]] = {
    "requests": {"cpu": "50m", "memory": "128Mi"},
    "limits": {"memory": "256Mi"},
}

# Field defaults, mirrored in the CRD (tests/operator/test_crd_schema.py compares them).
KEEPER_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "replicas": 1,
    "gasMultiplier": 1.2,
    "maxRetries": 5,
    "minBalanceEth": "0.05",
    "pollIntervalMs": 1000,
}
FUNDING_DEFAULTS: dict[str, Any] = {
    "enabled": True,
    "replicas": 1,
    "intervalSeconds": 28800,  # the contract's 8 hours
}
SPEC_DEFAULTS: dict[str, Any] = {"paused": False}
DEFAULT_DEPLOYMENT_KEY = "deployment.json"


class SpecError(ValueError):
    """The spec is invalid. `problems` lists `path: reason` strings, in field order."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class KeyRef:
    """A reference to one key of a Secret or ConfigMap in the market's namespace."""

    name: str
    key: str


@dataclass(frozen=True)
class KeeperSpec:
    enabled: bool
    replicas: int
    wallet: KeyRef | None
    gas_multiplier: float
    max_retries: int
    min_balance_eth: str
    poll_interval_ms: int


@dataclass(frozen=True)
class FundingSpec:
    enabled: bool
    replicas: int
    wallet: KeyRef | None
    interval_seconds: int


@dataclass(frozen=True)
class MarketSpec:
    pair: str
    chain_id: int
    rpc_url: str | None
    rpc_secret: KeyRef | None
    position_manager: str | None
    position_nft: str | None
    deployment_config_map: KeyRef | None
    keeper: KeeperSpec
    funding: FundingSpec
    resources: dict[str, dict[str, str]] = field(default_factory=dict)
    paused: bool = False


class _Checker:
    """Collects problems instead of stopping at the first one."""

    def __init__(self) -> None:
        self.problems: list[str] = []

    def fail(self, path: str, reason: str) -> None:
        self.problems.append(f"{path}: {reason}")

    def obj(
        self, data: Mapping[str, Any], key: str, path: str, required: bool
    ) -> dict[str, Any] | None:
        """The object at `key`; None when absent (a problem if required) or not an object."""
        value = data.get(key)
        if value is None:
            if required:
                self.fail(path, "is required")
            return None
        if not isinstance(value, Mapping):
            self.fail(path, "must be an object")
            return None
        return dict(value)

    def string(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        pattern: re.Pattern[str] | None = None,
        required: bool = False,
        default: str | None = None,
        reason: str = "has an invalid format",
        max_length: int | None = None,
    ) -> str | None:
        value = data.get(key, default)
        if value is None:
            if required:
                self.fail(path, "is required")
            return None
        if not isinstance(value, str):
            self.fail(path, "must be a string")
            return None
        if max_length is not None and len(value) > max_length:
            self.fail(path, f"must be at most {max_length} characters")
            return None
        if pattern is not None and not pattern.match(value):
            self.fail(path, reason)
            return None
        return value

    def integer(
        self, data: Mapping[str, Any], key: str, path: str, lo: int, hi: int, default: int | None
    ) -> int:
        value = data.get(key, default)
        if value is None:
            self.fail(path, "is required")
            return lo
        if isinstance(value, bool) or not isinstance(value, int):
            self.fail(path, "must be an integer")
            return lo
        if not lo <= value <= hi:
            self.fail(path, f"must be between {lo} and {hi}")
            return lo
        return value

    def number(
        self, data: Mapping[str, Any], key: str, path: str, lo: float, hi: float, default: float
    ) -> float:
        value = data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, int | float):
            self.fail(path, "must be a number")
            return lo
        if not lo <= value <= hi:
            self.fail(path, f"must be between {lo} and {hi}")
            return lo
        return float(value)

    def boolean(self, data: Mapping[str, Any], key: str, path: str, default: bool) -> bool:
        value = data.get(key, default)
        if not isinstance(value, bool):
            self.fail(path, "must be true or false")
            return default
        return value

    def key_ref(
        self,
        data: Mapping[str, Any],
        key: str,
        path: str,
        required: bool = False,
        default_key: str | None = None,
    ) -> KeyRef | None:
        if data.get(key) is None:
            if required:
                self.fail(path, "is required")
            return None
        ref = self.obj(data, key, path, required=True)
        if ref is None:
            return None
        name = self.string(
            ref,
            "name",
            f"{path}.name",
            DNS_SUBDOMAIN_RE,
            required=True,
            reason="must be a DNS-1123 subdomain (a Kubernetes object name)",
            max_length=253,
        )
        ref_key = self.string(
            ref,
            "key",
            f"{path}.key",
            DATA_KEY_RE,
            required=True,
            default=default_key,
            reason="must consist of alphanumerics, '-', '_' or '.'",
            max_length=253,
        )
        for extra in sorted(set(ref) - {"name", "key"}):
            self.fail(f"{path}.{extra}", "is not allowed (only name and key)")
        if name is None or ref_key is None:
            return None
        return KeyRef(name=name, key=ref_key)


def _resources(check: _Checker, spec: Mapping[str, Any]) -> dict[str, dict[str, str]]:
    raw = check.obj(spec, "resources", "spec.resources", required=False)
    if raw is None:
        return {k: dict(v) for k, v in DEFAULT_RESOURCES.items()}
    result: dict[str, dict[str, str]] = {}
    for section in ("requests", "limits"):
        values = check.obj(raw, section, f"spec.resources.{section}", required=False) or {}
        clean: dict[str, str] = {}
        for res_name in sorted(values):
            path = f"spec.resources.{section}.{res_name}"
            if res_name not in ("cpu", "memory", "ephemeral-storage"):
                check.fail(path, "only cpu, memory and ephemeral-storage are supported")
                continue
            value = values[res_name]
            if isinstance(value, int | float) and not isinstance(value, bool):
                value = str(value)
            if not isinstance(value, str) or not QUANTITY_RE.match(value):
                check.fail(path, "must be a Kubernetes quantity such as 100m or 256Mi")
                continue
            clean[res_name] = value
        if clean:
            result[section] = clean
    for extra in sorted(set(raw) - {"requests", "limits"}):
        check.fail(f"spec.resources.{extra}", "is not allowed (only requests and limits)")
    return result


def _scan_for_key_material(check: _Checker, value: Any, path: str) -> None:
    """Flag inline key material anywhere in the spec, by field name or by shape."""
    if isinstance(value, Mapping):
        for key, sub in value.items():
            sub_path = f"{path}.{key}"
            if isinstance(key, str) and FORBIDDEN_KEY_RE.match(key):
                check.fail(sub_path, "inline key material is not allowed; use a Secret reference")
            else:
                _scan_for_key_material(check, sub, sub_path)
    elif isinstance(value, list):
        for index, item in enumerate(value):
            _scan_for_key_material(check, item, f"{path}[{index}]")
    elif isinstance(value, str) and HEX_KEY_RE.match(value.strip()):
        check.fail(path, "looks like a private key; keys may only come from a Secret reference")


def parse_spec(spec: Mapping[str, Any] | None, name: str = "market") -> MarketSpec:
    """Validate and default a PerpMarket spec. Raises SpecError listing every problem."""
    check = _Checker()
    if not MARKET_NAME_RE.match(name) or len(name) > MAX_MARKET_NAME:
        check.fail(
            "metadata.name",
            f"must be a DNS-1123 label of at most {MAX_MARKET_NAME} characters "
            "(it prefixes every object the operator creates)",
        )
    spec = spec or {}
    if not isinstance(spec, Mapping):
        raise SpecError(["spec: must be an object"])
    _scan_for_key_material(check, spec, "spec")

    pair = check.string(
        spec,
        "pair",
        "spec.pair",
        PAIR_RE,
        required=True,
        reason="must look like BASE/QUOTE in capitals, e.g. ETH/USDT",
    )
    chain_id = check.integer(spec, "chainId", "spec.chainId", 1, 2**53 - 1, default=None)
    rpc_url, rpc_secret = _rpc(check, spec)
    position_manager, position_nft, deployment_cm = _contracts(check, spec)
    keeper = _keeper(check, spec)
    funding = _funding(check, spec)
    resources = _resources(check, spec)
    paused = check.boolean(spec, "paused", "spec.paused", SPEC_DEFAULTS["paused"])

    if check.problems:
        raise SpecError(check.problems)
    assert pair is not None
    return MarketSpec(
        pair=pair,
        chain_id=chain_id,
        rpc_url=rpc_url,
        rpc_secret=rpc_secret,
        position_manager=position_manager,
        position_nft=position_nft,
        deployment_config_map=deployment_cm,
        keeper=keeper,
        funding=funding,
        resources=resources,
        paused=paused,
    )


def _rpc(check: _Checker, spec: Mapping[str, Any]) -> tuple[str | None, KeyRef | None]:
    """spec.rpc: exactly one of url or secretRef."""
    rpc = check.obj(spec, "rpc", "spec.rpc", required=True)
    rpc_url = rpc_secret = None
    if rpc is not None:
        has_url, has_secret = rpc.get("url") is not None, rpc.get("secretRef") is not None
        if has_url == has_secret:
            check.fail("spec.rpc", "set exactly one of url or secretRef")
        rpc_url = check.string(
            rpc,
            "url",
            "spec.rpc.url",
            RPC_URL_RE,
            max_length=2048,
            reason="must be an http(s):// or ws(s):// URL without credentials "
            "(put URLs with credentials or API keys in a Secret and use secretRef)",
        )
        rpc_secret = check.key_ref(rpc, "secretRef", "spec.rpc.secretRef")

    return rpc_url, rpc_secret


def _contracts(
    check: _Checker, spec: Mapping[str, Any]
) -> tuple[str | None, str | None, KeyRef | None]:
    """spec.contracts: both addresses inline, or a deployment ConfigMap."""
    contracts = check.obj(spec, "contracts", "spec.contracts", required=True)
    position_manager = position_nft = None
    deployment_cm = None
    if contracts is not None:
        position_manager = check.string(
            contracts,
            "positionManager",
            "spec.contracts.positionManager",
            ADDRESS_RE,
            reason="must be a 0x-prefixed 20-byte hex address",
        )
        position_nft = check.string(
            contracts,
            "positionNFT",
            "spec.contracts.positionNFT",
            ADDRESS_RE,
            reason="must be a 0x-prefixed 20-byte hex address",
        )
        deployment_cm = check.key_ref(
            contracts,
            "deploymentConfigMapRef",
            "spec.contracts.deploymentConfigMapRef",
            default_key=DEFAULT_DEPLOYMENT_KEY,
        )
        inline = (
            contracts.get("positionManager") is not None or contracts.get("positionNFT") is not None
        )
        has_ref = contracts.get("deploymentConfigMapRef") is not None
        if inline and has_ref:
            check.fail(
                "spec.contracts",
                "set either positionManager and positionNFT, or deploymentConfigMapRef, not both",
            )
        elif not has_ref and (
            contracts.get("positionManager") is None or contracts.get("positionNFT") is None
        ):
            check.fail(
                "spec.contracts",
                "set both positionManager and positionNFT, or deploymentConfigMapRef",
            )

    return position_manager, position_nft, deployment_cm


def _keeper(check: _Checker, spec: Mapping[str, Any]) -> KeeperSpec:
    """spec.keeper, defaulted; a wallet is required when it is enabled."""
    k = check.obj(spec, "keeper", "spec.keeper", required=False) or {}
    keeper = KeeperSpec(
        enabled=check.boolean(k, "enabled", "spec.keeper.enabled", KEEPER_DEFAULTS["enabled"]),
        replicas=check.integer(
            k, "replicas", "spec.keeper.replicas", 0, 10, KEEPER_DEFAULTS["replicas"]
        ),
        wallet=check.key_ref(k, "walletSecretRef", "spec.keeper.walletSecretRef"),
        gas_multiplier=check.number(
            k,
            "gasMultiplier",
            "spec.keeper.gasMultiplier",
            1.0,
            10.0,
            KEEPER_DEFAULTS["gasMultiplier"],
        ),
        max_retries=check.integer(
            k, "maxRetries", "spec.keeper.maxRetries", 0, 100, KEEPER_DEFAULTS["maxRetries"]
        ),
        min_balance_eth=check.string(
            k,
            "minBalanceEth",
            "spec.keeper.minBalanceEth",
            DECIMAL_RE,
            default=KEEPER_DEFAULTS["minBalanceEth"],
            reason='must be a decimal amount of ETH as a string, e.g. "0.05"',
        )
        or KEEPER_DEFAULTS["minBalanceEth"],
        poll_interval_ms=check.integer(
            k,
            "pollIntervalMs",
            "spec.keeper.pollIntervalMs",
            50,
            600_000,
            KEEPER_DEFAULTS["pollIntervalMs"],
        ),
    )
    if keeper.enabled and k.get("walletSecretRef") is None:
        check.fail("spec.keeper.walletSecretRef", "is required when the keeper is enabled")

    return keeper


def _funding(check: _Checker, spec: Mapping[str, Any]) -> FundingSpec:
    """spec.funding, defaulted; a wallet is required when it is enabled."""
    f = check.obj(spec, "funding", "spec.funding", required=False) or {}
    funding = FundingSpec(
        enabled=check.boolean(f, "enabled", "spec.funding.enabled", FUNDING_DEFAULTS["enabled"]),
        replicas=check.integer(
            f, "replicas", "spec.funding.replicas", 0, 3, FUNDING_DEFAULTS["replicas"]
        ),
        wallet=check.key_ref(f, "walletSecretRef", "spec.funding.walletSecretRef"),
        interval_seconds=check.integer(
            f,
            "intervalSeconds",
            "spec.funding.intervalSeconds",
            60,
            86_400,
            FUNDING_DEFAULTS["intervalSeconds"],
        ),
    )
    if funding.enabled and f.get("walletSecretRef") is None:
        check.fail("spec.funding.walletSecretRef", "is required when funding is enabled")

    return funding
