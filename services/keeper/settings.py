"""Keeper settings: the shared service settings plus liquidation tuning and wallet safety.

The wallet is settings.wallet_key("keeper") (KEEPER_PRIVATE_KEY, falling back to PRIVATE_KEY)
and is required. It must differ from the funding updater's wallet (FUNDING_PRIVATE_KEY /
PRIVATE_KEY): two services sending from one wallet fight over nonces. ALLOW_SHARED_WALLET=true
overrides that. Each keeper replica needs its own wallet for the same reason.

Profitability (docs/keeper.md, "Competing keepers"): a liquidation is sent only when its reward
covers its gas cost x KEEPER_MIN_PROFIT_RATIO (0: always). The gas cost is converted into
collateral with KEEPER_NATIVE_PRICE (collateral units per native token) when set, else with the
index price of the market KEEPER_NATIVE_PRICE_MARKET (default ETH/USDT), which must then be a
market of the PositionManager (checked at start, exit 2 otherwise).

Competition (docs/keeper.md, "Competing keepers"): after a lost race the keeper lets at most
KEEPER_CONTESTED_CONCURRENCY liquidations (1) be between their pending-block simulation and
their broadcast at once, for KEEPER_CONTESTED_FOR_S; otherwise up to LIQUIDATION_CONCURRENCY
(window.py).

Contract addresses come from POSITION_MANAGER_ADDRESS or the deployment JSON at
DEPLOYMENT_FILE (explicit address wins); markets from MARKETS (pairs), else the deployment's,
else every market the PositionManager lists.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings

from shared.chain.deployment import Deployment, market_id_hex
from shared.config import (
    BaseServiceSettings,
    ConfigError,
    _validate_private_key,
    load_settings,
)

SERVICE = "keeper"
PAIR_RE = re.compile(r"^[A-Z0-9]{2,12}/[A-Z0-9]{2,12}$")


class KeeperSettings(BaseServiceSettings):
    keeper_min_balance_eth: float = Field(
        default=0.05, ge=0, description="warn (log + metric) when the wallet holds less"
    )
    keeper_group_id: str = Field(default="perpex-keeper", min_length=1)
    health_batch_size: int = Field(
        default=500, ge=1, le=5000, description="positions per getPositionsHealth eth_call"
    )
    margin_buffer: float = Field(
        default=0.10,
        ge=0,
        le=10,
        description="confirm on-chain when margin < maintenance x (1 + MARGIN_BUFFER)",
    )
    replace_after_s: float = Field(default=15.0, gt=0, le=3600)
    confirm_timeout_s: float = Field(default=300.0, gt=0, le=86_400)
    shutdown_timeout_s: float = Field(default=30.0, ge=0, le=3600)
    allow_shared_wallet: bool = False
    liquidation_concurrency: int = Field(
        default=32, ge=1, le=1000, description="liquidations simulated and broadcast at once"
    )
    max_pending_txs: int = Field(
        default=1000, ge=1, le=100_000, description="liquidations broadcast and not yet mined"
    )
    market_refresh_s: float = Field(
        default=30.0, gt=0, description="re-read market ratios and the funding history"
    )
    full_sweep_s: float = Field(
        default=60.0,
        ge=0,
        description="every this many seconds (and at start) confirm every position on-chain, "
        "not only the ranked candidates (0: never)",
    )
    rpc_timeout_s: float = Field(default=15.0, gt=0, le=600)
    in_flight_wait_s: float = Field(
        default=120.0,
        ge=0,
        description="on start, wait this long for transactions a previous run left pending",
    )
    stuck_after_s: float = Field(
        default=120.0,
        gt=0,
        le=86_400,
        description="a liquidation not mined for this long makes the keeper report itself "
        "stuck (log, metric, not ready)",
    )

    keeper_contested_concurrency: int = Field(
        default=1,
        ge=1,
        le=1000,
        description="liquidations between their pending-block simulation and their broadcast "
        "at once while another liquidator is competing (a race lost recently)",
    )
    keeper_contested_for_s: float = Field(
        default=120.0,
        ge=0,
        le=86_400,
        description="how long after a lost race the keeper counts itself contested",
    )

    keeper_min_profit_ratio: float = Field(
        default=1.0,
        ge=0,
        le=1000,
        allow_inf_nan=False,
        description="send a liquidation only when its reward >= its gas cost x this (0: always)",
    )
    keeper_native_price: float | None = Field(
        default=None,
        gt=0,
        le=1e12,
        allow_inf_nan=False,
        description="price of one native token (ETH) in collateral units, for the gas cost; "
        "unset: the index price of KEEPER_NATIVE_PRICE_MARKET",
    )
    keeper_native_price_market: str = Field(
        default="ETH/USDT",
        description="the market whose index price is the native token's price (without "
        "KEEPER_NATIVE_PRICE)",
    )

    @field_validator("keeper_native_price_market")
    @classmethod
    def _native_market(cls, value: str) -> str:
        pair = value.strip().upper()
        if not PAIR_RE.match(pair):
            raise ValueError("must be a pair like ETH/USDT")
        return pair

    @property
    def min_balance_wei(self) -> int:
        return int(self.keeper_min_balance_eth * 10**18)

    @property
    def profit_check(self) -> bool:
        return self.keeper_min_profit_ratio > 0


class _WalletView(BaseSettings):
    """Just the wallet fields, so their problems are reported even when others are invalid."""

    model_config = KeeperSettings.model_config

    private_key: str | None = None
    keeper_private_key: str | None = None
    funding_private_key: str | None = None
    allow_shared_wallet: bool | str = False


def _key(value: str | SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    secret = value if isinstance(value, SecretStr) else SecretStr(value)
    try:
        return _validate_private_key(secret)
    except ValueError:
        return None


def wallet_problems(
    keeper: SecretStr | None, funding: SecretStr | None, allow_shared: bool
) -> dict[str, str]:
    if keeper is None:
        return {"KEEPER_PRIVATE_KEY": "is required (or PRIVATE_KEY): the keeper signs liquidations"}
    if (
        funding is not None
        and keeper.get_secret_value().lower() == funding.get_secret_value().lower()
        and not allow_shared
    ):
        return {
            "KEEPER_PRIVATE_KEY": "is the funding updater's wallet too (FUNDING_PRIVATE_KEY / "
            "PRIVATE_KEY); use a separate wallet or set ALLOW_SHARED_WALLET=true"
        }
    return {}


def _wallet_problems_from_env(overrides: dict[str, Any]) -> dict[str, str]:
    wanted = {k: v for k, v in overrides.items() if k in _WalletView.model_fields}
    try:
        view = _WalletView(**wanted)
    except Exception:
        return {}
    keeper = _key(view.keeper_private_key) or _key(view.private_key)
    funding = _key(view.funding_private_key) or _key(view.private_key)
    allow = str(view.allow_shared_wallet).strip().lower() in ("1", "true", "yes", "on")
    return wallet_problems(keeper, funding, allow)


def load_keeper_settings(**overrides: Any) -> KeeperSettings:
    """Settings, or one ConfigError listing every problem (secrets never shown)."""
    try:
        settings = load_settings(KeeperSettings, SERVICE, **overrides)
    except ConfigError as exc:
        problems = dict(exc.problems)
        for key, why in _wallet_problems_from_env(overrides).items():
            problems.setdefault(key, why)
        raise ConfigError(problems, SERVICE) from None
    problems = wallet_problems(
        settings.wallet_key("keeper"), settings.wallet_key("funding"), settings.allow_shared_wallet
    )
    if not settings.position_manager_address and settings.deployment_file is None:
        problems["DEPLOYMENT_FILE"] = "set DEPLOYMENT_FILE or POSITION_MANAGER_ADDRESS"
    elif settings.deployment_file is not None and not settings.deployment_file.is_file():
        problems["DEPLOYMENT_FILE"] = f"{settings.deployment_file} does not exist"
    if problems:
        raise ConfigError(problems, SERVICE)
    return settings


@dataclass(frozen=True)
class KeeperTargets:
    position_manager: str  # checksum address
    markets: dict[str, str | None]  # market id (0x lower-case) -> pair (None: discover)
    discover_markets: bool  # True: also serve every market the contract lists
    known_pairs: dict[str, str] = field(default_factory=dict)  # id -> pair (deployment file)


def resolve_targets(settings: KeeperSettings) -> KeeperTargets:
    deployment: Deployment | None = None
    if settings.deployment_file is not None:
        try:
            deployment = Deployment.load(settings.deployment_file)
        except Exception as exc:
            raise ConfigError(
                {"DEPLOYMENT_FILE": f"cannot read {settings.deployment_file}: {exc}"}, SERVICE
            ) from None
    pm = settings.position_manager_address or (
        deployment.contracts.position_manager if deployment else None
    )
    if not pm:
        raise ConfigError({"POSITION_MANAGER_ADDRESS": "is required"}, SERVICE)
    from web3 import Web3

    markets: dict[str, str | None] = {}
    wanted = settings.market_list
    if wanted:
        for pair in wanted:
            markets[market_id_hex(pair)] = pair
    elif deployment is not None:
        for pair, m in deployment.markets.items():
            markets[m.market_id] = pair
    known = (
        {m.market_id.lower(): pair for pair, m in deployment.markets.items()} if deployment else {}
    )
    return KeeperTargets(
        Web3.to_checksum_address(pm), markets, discover_markets=not wanted, known_pairs=known
    )
