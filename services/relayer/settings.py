"""Relayer settings: the shared service settings plus the remote chain and the relayer's wallet.

RPC_URL / CHAIN_ID are the home chain's (where the Vault is); REMOTE_RPC_URL / REMOTE_CHAIN_ID
the remote one's. DEPLOYMENT_FILE must hold a `bridge` section (`perpex deploy
--remote-rpc-url`). The wallet is RELAYER_PRIVATE_KEY (PRIVATE_KEY is the fallback): on local
chains it must be the message libraries' verifier (the deployment's `bridge.verifier`); it pays
gas on both chains.
"""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, SecretStr, field_validator, model_validator

from shared.chain.deployment import BridgeDeployment, Deployment
from shared.config import BaseServiceSettings, ConfigError, _validate_private_key, load_settings


class RelayerSettings(BaseServiceSettings):
    remote_rpc_url: str = Field(description="JSON-RPC endpoint of the bridge's remote chain")
    remote_chain_id: int = Field(default=31338, gt=0)
    relayer_private_key: SecretStr | None = Field(default=None)
    relayer_state_file: Path = Field(
        default=Path(".perpex/relayer-state.json"),
        description="scan cursor and undelivered packets (the chain is the truth; see docs)",
    )
    confirmations: int = Field(
        default=0, ge=0, le=10_000, description="source blocks to wait before verifying"
    )
    relayer_log_span: int = Field(default=2000, ge=1, le=1_000_000, description="eth_getLogs span")
    relayer_backoff_max_s: float = Field(default=30.0, gt=0, le=3600)
    relayer_confirm_timeout_s: float = Field(default=120.0, gt=0)
    relayer_replace_after_s: float = Field(default=15.0, gt=0)

    @field_validator("remote_rpc_url")
    @classmethod
    def _remote_url(cls, value: str) -> str:
        if not re.match(r"^(https?|wss?)://[^\s/]+", value):
            raise ValueError("must be an http(s):// or ws(s):// URL")
        return value

    @field_validator("relayer_private_key", mode="after")
    @classmethod
    def _relayer_key(cls, value: SecretStr | None) -> SecretStr | None:
        return _validate_private_key(value)

    @model_validator(mode="after")
    def _check(self) -> RelayerSettings:
        if self.relayer_private_key is None and self.private_key is None:
            raise ValueError("set RELAYER_PRIVATE_KEY (or PRIVATE_KEY)")
        if self.deployment_file is None:
            raise ValueError("set DEPLOYMENT_FILE (a deployment with a bridge section)")
        if not self.deployment_file.is_file():
            raise ValueError(f"DEPLOYMENT_FILE {self.deployment_file} does not exist")
        return self

    @property
    def wallet(self) -> SecretStr:
        key = self.relayer_private_key or self.private_key
        assert key is not None
        return key

    def bridge(self) -> BridgeDeployment:
        """The deployment's bridge section, checked against CHAIN_ID and REMOTE_CHAIN_ID."""
        assert self.deployment_file is not None
        try:
            deployment = Deployment.load(self.deployment_file)
        except Exception as exc:
            raise ConfigError(
                {"DEPLOYMENT_FILE": f"cannot read {self.deployment_file}: {exc}"}, "relayer"
            ) from None
        if deployment.bridge is None:
            raise ConfigError(
                {"DEPLOYMENT_FILE": "has no bridge section (perpex deploy --remote-rpc-url)"},
                "relayer",
            )
        b = deployment.bridge
        problems = {}
        if b.home.chain_id != self.chain_id:
            problems["CHAIN_ID"] = f"is {self.chain_id}; the bridge's home is {b.home.chain_id}"
        if b.remote.chain_id != self.remote_chain_id:
            problems["REMOTE_CHAIN_ID"] = (
                f"is {self.remote_chain_id}; the bridge's remote is {b.remote.chain_id}"
            )
        if problems:
            raise ConfigError(problems, "relayer")
        return b

    def safe_dump(self) -> dict[str, object]:
        from shared.config import redact_url

        data = super().safe_dump()
        if data.get("relayer_private_key") is not None:
            data["relayer_private_key"] = "***"
        data["remote_rpc_url"] = redact_url(self.remote_rpc_url)
        return data


def load_relayer_settings(**overrides: object) -> RelayerSettings:
    return load_settings(RelayerSettings, "relayer", **overrides)
