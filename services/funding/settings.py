"""Funding updater settings: the shared service settings plus schedule, election and wallet.

The contract's per-market `fundingInterval` is the truth; FUNDING_INTERVAL_S (set by the
operator from the PerpMarket spec) is only checked against it, with a warning on mismatch.

The wallet is FUNDING_PRIVATE_KEY (PRIVATE_KEY is the fallback), separate from the keeper's.
"""

from __future__ import annotations

import os
import socket
from decimal import Decimal
from typing import Literal

from pydantic import Field, SecretStr, ValidationInfo, field_validator, model_validator

from services.funding.lease import election_name
from shared.chain.deployment import Deployment
from shared.config import BaseServiceSettings, ConfigError, load_settings, renamed

SA_NAMESPACE_FILE = "/var/run/secrets/kubernetes.io/serviceaccount/namespace"


class FundingSettings(BaseServiceSettings):
    # Redeclared only to validate the default too: the funding wallet is required.
    funding_private_key: SecretStr | None = Field(default=None, validate_default=True)

    funding_interval_s: int | None = renamed(
        "funding_interval_s",
        "funding_interval_seconds",
        default=None,
        gt=0,
        description="expected interval; the contract's value wins",
    )
    funding_grace_s: int = renamed(
        "funding_grace_s",
        "funding_grace_seconds",
        default=5,
        ge=0,
        le=3600,
        description="chain seconds to wait after a window opens",
    )
    funding_max_sleep_s: float = renamed(
        "funding_max_sleep_s",
        "funding_max_sleep_seconds",
        default=60.0,
        gt=0,
        le=3600,
        description="longest sleep before re-reading chain time",
    )
    funding_revert_backoff_s: float = renamed(
        "funding_revert_backoff_s",
        "funding_revert_backoff_seconds",
        default=300.0,
        gt=0,
        description="first back-off after a revert (doubles, capped)",
    )
    funding_revert_backoff_max_s: float = renamed(
        "funding_revert_backoff_max_s", "funding_revert_backoff_max_seconds", default=3600.0, gt=0
    )
    funding_error_backoff_max_s: float = renamed(
        "funding_error_backoff_max_s",
        "funding_error_backoff_max_seconds",
        default=60.0,
        gt=0,
        description="cap of the back-off after RPC failures",
    )
    funding_min_balance_eth: Decimal = Field(default=Decimal("0.05"), ge=0)
    funding_balance_check_s: float = renamed(
        "funding_balance_check_s", "funding_balance_check_seconds", default=300.0, gt=0
    )
    funding_confirm_timeout_s: float = Field(default=180.0, gt=0)
    funding_replace_after_s: float = Field(default=30.0, gt=0)

    leader_election: Literal["postgres", "kubernetes", "none"] = "postgres"
    leader_retry_s: float = renamed(
        "leader_retry_s", "leader_retry_seconds", default=2.0, gt=0, le=60
    )
    lease_name: str = Field(default="", description="default perpex-funding-<pair-slug>")
    lease_namespace: str = Field(default="", description="default POD_NAMESPACE")
    pod_namespace: str = ""
    pod_name: str = Field(default="", description="lease holder identity (downward API)")
    lease_duration_s: int = renamed(
        "lease_duration_s", "lease_duration_seconds", default=15, ge=3, le=3600
    )
    lease_renew_deadline_s: float = renamed(
        "lease_renew_deadline_s", "lease_renew_deadline_seconds", default=10.0, gt=0
    )
    kube_api_url: str = Field(
        default="", description="API server URL without auth (kubectl proxy, tests)"
    )

    shutdown_timeout_s: float = Field(default=30.0, ge=0, le=600)
    kafka_listen: bool = Field(default=True, description="learn of updates from Kafka events")

    @field_validator("funding_private_key", mode="after")
    @classmethod
    def _funding_wallet_required(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        # When PRIVATE_KEY itself is invalid it is reported on its own (absent from info.data).
        if value is None and "private_key" in info.data and info.data["private_key"] is None:
            raise ValueError("is required (the funding wallet; PRIVATE_KEY is the fallback)")
        return value

    @field_validator("leader_election", mode="before")
    @classmethod
    def _lower(cls, value: object) -> object:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _check(self) -> FundingSettings:
        # Raised as ConfigError (which pydantic lets through) so each problem is named by its
        # environment key rather than reported against the model as a whole.
        problems: dict[str, str] = {}
        if not self.position_manager_address and self.deployment_file is None:
            problems["DEPLOYMENT_FILE"] = "set DEPLOYMENT_FILE or POSITION_MANAGER_ADDRESS"
        if self.deployment_file is not None and not self.deployment_file.is_file():
            problems["DEPLOYMENT_FILE"] = f"{self.deployment_file} does not exist"
        if self.leader_election == "kubernetes" and not (
            self.leader_retry_s < self.lease_renew_deadline_s < self.lease_duration_s
        ):
            problems["LEASE_RENEW_DEADLINE_S"] = (
                "need LEADER_RETRY_S < LEASE_RENEW_DEADLINE_S < LEASE_DURATION_S"
            )
        if self.funding_revert_backoff_max_s < self.funding_revert_backoff_s:
            problems["FUNDING_REVERT_BACKOFF_MAX_S"] = "must be >= FUNDING_REVERT_BACKOFF_S"
        if problems:
            raise ConfigError(problems, "funding")
        return self

    # ---- derived ----
    @property
    def election_name(self) -> str:
        return self.lease_name or election_name(self.market_list)

    @property
    def identity(self) -> str:
        return self.pod_name or f"{socket.gethostname()}-{os.getpid()}"

    @property
    def namespace(self) -> str:
        if self.lease_namespace or self.pod_namespace:
            return self.lease_namespace or self.pod_namespace
        try:
            with open(SA_NAMESPACE_FILE) as fh:
                return fh.read().strip() or "default"
        except OSError:
            return "default"

    @property
    def min_balance_wei(self) -> int:
        return int(self.funding_min_balance_eth * 10**18)

    def load_deployment(self) -> Deployment | None:
        if self.deployment_file is None:
            return None
        try:
            return Deployment.load(self.deployment_file)
        except Exception as exc:
            raise ConfigError(
                {"DEPLOYMENT_FILE": f"cannot read {self.deployment_file}: {exc}"}, "funding"
            ) from None

    def position_manager(self) -> str:
        if self.position_manager_address:
            return self.position_manager_address
        deployment = self.load_deployment()
        assert deployment is not None  # guaranteed by _check
        return deployment.contracts.position_manager


class FundingStatusSettings(FundingSettings):
    """`perpex funding status` only reads the chain: no wallet needed."""

    @field_validator("funding_private_key", mode="after")
    @classmethod
    def _funding_wallet_required(
        cls, value: SecretStr | None, info: ValidationInfo
    ) -> SecretStr | None:
        return value


def load_funding_settings(**overrides: object) -> FundingSettings:
    return load_settings(FundingSettings, "funding", **overrides)


def load_status_settings(**overrides: object) -> FundingStatusSettings:
    return load_settings(FundingStatusSettings, "funding", **overrides)
