"""Service configuration: one pydantic-settings model read from the environment and `.env`.

Keys are the ones operators already use (RPC_URL, PRIVATE_KEY, CHAIN_ID, ...). Each service
extends `BaseServiceSettings` with its own fields. `load_settings()` turns any validation
failure into one `ConfigError` that lists every bad field and why, never echoing a secret;
`exit_on_config_error()` prints it and exits with status 2.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from pydantic import AliasChoices, Field, SecretStr, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

log = logging.getLogger("perpex.config")

ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
PRIVATE_KEY_RE = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
SECRET_FIELDS = frozenset({"private_key", "keeper_private_key", "funding_private_key"})
EXIT_CONFIG_ERROR = 2


class ConfigError(Exception):
    """Configuration is invalid. `problems` maps field (env key) to a human reason."""

    def __init__(self, problems: dict[str, str], service: str = "perpex"):
        self.problems = problems
        self.service = service
        lines = [f"  {key}: {why}" for key, why in problems.items()]
        super().__init__(f"invalid {service} configuration:\n" + "\n".join(lines))


def _validate_private_key(value: SecretStr | None) -> SecretStr | None:
    if value is None:
        return None
    raw = value.get_secret_value().strip()
    if not raw:
        return None
    if not PRIVATE_KEY_RE.match(raw):
        # Never include the value: a typo'd key is still mostly a key.
        raise ValueError("must be 32 bytes of hex (64 hex digits, optional 0x prefix)")
    if int(raw, 16) == 0:
        raise ValueError("must not be zero")
    return SecretStr(raw if raw.startswith("0x") else "0x" + raw)


def validate_address(value: str | None) -> str | None:
    if value is None or value == "":
        return None
    if not ADDRESS_RE.match(value):
        raise ValueError("must be a 0x-prefixed 20-byte hex address")
    return value


class BaseServiceSettings(BaseSettings):
    """Settings shared by every Perp-EX service."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        hide_input_in_errors=True,
    )

    rpc_url: str = Field(description="JSON-RPC endpoint of the chain (http:// or https://)")
    chain_id: int = Field(
        default=31337, gt=0, description="expected chain id; checked against the node"
    )
    private_key: SecretStr | None = Field(default=None, description="fallback wallet key")
    keeper_private_key: SecretStr | None = Field(default=None)
    funding_private_key: SecretStr | None = Field(default=None)
    position_manager_address: str | None = Field(default=None)
    position_nft_address: str | None = Field(default=None)
    deployment_file: Path | None = Field(
        default=None, description="deployment JSON written by the deploy script; fills addresses"
    )
    poll_interval_ms: int = Field(default=1000, ge=50, le=600_000)
    max_retries: int = Field(default=5, ge=0, le=100)
    gas_multiplier: float = Field(default=1.2, ge=1.0, le=10.0)
    db_uri: str = Field(default="postgresql://perpex@127.0.0.1:55432/perpex")
    kafka_bootstrap_servers: str = Field(default="127.0.0.1:59092")
    kafka_topic: str = Field(default="perpex.events", min_length=1)
    markets: str = Field(default="", description="comma-separated pairs; empty means all deployed")
    log_level: str = Field(default="INFO")
    health_port: int = Field(
        default=8080, ge=0, le=65535, description="probes (/healthz, /readyz, /status); 0: off"
    )
    dependency_check_s: float = Field(
        default=5.0,
        ge=0.2,
        le=300,
        description="how often PostgreSQL, the broker and the RPC node are probed for readiness",
    )

    @field_validator("rpc_url")
    @classmethod
    def _rpc_url(cls, value: str) -> str:
        if not re.match(r"^(https?|wss?)://[^\s/]+", value):
            raise ValueError("must be an http(s):// or ws(s):// URL")
        return value

    @field_validator("private_key", "keeper_private_key", "funding_private_key", mode="after")
    @classmethod
    def _private_key(cls, value: SecretStr | None) -> SecretStr | None:
        return _validate_private_key(value)

    @field_validator("position_manager_address", "position_nft_address")
    @classmethod
    def _address(cls, value: str | None) -> str | None:
        return validate_address(value)

    @field_validator("db_uri")
    @classmethod
    def _db_uri(cls, value: str) -> str:
        if not re.match(r"^postgres(ql)?://", value):
            raise ValueError("must be a postgresql:// DSN")
        try:
            urlsplit(value).port  # noqa: B018  (parses user:password@host:port)
        except ValueError:
            # never echo the value: it holds the password
            raise ValueError(
                "is malformed: characters such as / @ : # in the user name or password must be "
                "percent-encoded"
            ) from None
        return value

    @field_validator("kafka_bootstrap_servers")
    @classmethod
    def _bootstrap(cls, value: str) -> str:
        servers = [s.strip() for s in value.split(",") if s.strip()]
        if not servers or not all(re.match(r"^[\w.\-\[\]:]+:\d+$", s) for s in servers):
            raise ValueError("must be a comma-separated list of host:port")
        return ",".join(servers)

    @field_validator("log_level")
    @classmethod
    def _log_level(cls, value: str) -> str:
        level = value.upper()
        if level not in {"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"}:
            raise ValueError("must be one of DEBUG, INFO, WARNING, ERROR, CRITICAL")
        return level

    # ---- derived views ----
    @property
    def market_list(self) -> list[str]:
        return [m.strip() for m in self.markets.split(",") if m.strip()]

    @property
    def poll_interval(self) -> float:
        return self.poll_interval_ms / 1000.0

    def wallet_key(self, role: str) -> SecretStr | None:
        """The key for `role` ("keeper" or "funding"), falling back to PRIVATE_KEY."""
        specific = {"keeper": self.keeper_private_key, "funding": self.funding_private_key}[role]
        return specific or self.private_key

    def safe_dump(self) -> dict[str, Any]:
        """Settings as a dict with every secret masked, for logs and status pages: the private
        keys, the database password, and the RPC URL's path and query (where providers put
        API keys)."""
        data = self.model_dump()
        for key in SECRET_FIELDS:
            if data.get(key) is not None:
                data[key] = "***"
        data["db_uri"] = redact_dsn(self.db_uri)
        data["rpc_url"] = redact_url(self.rpc_url)
        return data


def redact_url(url: str) -> str:
    """scheme://host[:port] of a URL, the rest masked: user info, path and query may carry
    credentials (https://eth-mainnet.example/v2/<API key>)."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    if ":" in host:  # IPv6
        host = f"[{host}]"
    rest = "/***" if parts.path.strip("/") or parts.query or parts.username else ""
    return f"{parts.scheme}://{host}{port}{rest}"


def redact_dsn(dsn: str) -> str:
    """A PostgreSQL DSN with its password (and query options) masked; user, host, port and
    database kept, as they tell which database is meant."""
    try:
        parts = urlsplit(dsn)
        host = parts.hostname or ""
        port = f":{parts.port}" if parts.port else ""
    except ValueError:
        return "***"
    user = parts.username or ""
    auth = f"{user}:***@" if parts.password is not None else (f"{user}@" if user else "")
    query = "?***" if parts.query else ""
    return f"{parts.scheme}://{auth}{host}{port}{parts.path}{query}"


S = TypeVar("S", bound=BaseServiceSettings)


def renamed(new: str, old: str, **field: Any) -> Any:
    """The field of a setting `new` renamed from `old` (e.g. funding_grace_s, once
    funding_grace_seconds): the old environment name is still read, with a warning at start,
    for one release; the new one wins when both are set."""
    return Field(validation_alias=AliasChoices(new, old), **field)


def _deprecated_names(cls: type[BaseServiceSettings]) -> dict[str, str]:
    """old environment name -> new one, for the class's renamed settings."""
    out = {}
    for name, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            for choice in alias.choices:
                if isinstance(choice, str) and choice != name:
                    out[choice.upper()] = name.upper()
    return out


def warn_deprecated_env(cls: type[BaseServiceSettings], service: str) -> list[str]:
    """Log one warning per deprecated setting name found in the environment."""
    found = []
    for old, new in sorted(_deprecated_names(cls).items()):
        if any(k.upper() == old for k in os.environ):
            log.warning(
                "%s: %s is deprecated, use %s (the old name is read until the next release)",
                service,
                old,
                new,
            )
            found.append(old)
    return found


def _env_key(loc: tuple[Any, ...]) -> str:
    return str(loc[0]).upper() if loc else "?"


def load_settings(cls: type[S], service: str = "perpex", **overrides: Any) -> S:
    """Build settings, raising one ConfigError naming every invalid field (secrets masked)."""
    warn_deprecated_env(cls, service)
    try:
        return cls(**overrides)
    except ValidationError as exc:
        problems: dict[str, str] = {}
        for err in exc.errors(include_input=False, include_url=False):
            key = _env_key(err["loc"])
            msg = err["msg"]
            if err["type"] == "missing":
                msg = "is required but not set"
            msg = msg.removeprefix("Value error, ")
            problems[key] = f"{problems[key]}; {msg}" if key in problems else msg
        raise ConfigError(problems, service) from None


def exit_on_config_error(fn: Callable[[], S]) -> S:
    """Run a settings factory; on ConfigError print it to stderr and exit 2."""
    try:
        return fn()
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(EXIT_CONFIG_ERROR) from None


def check_chain_id(settings: BaseServiceSettings, reported_chain_id: int) -> None:
    """Raise ConfigError when the node's chain id differs from CHAIN_ID."""
    check_chain_id_value(settings.chain_id, reported_chain_id)


def check_chain_id_value(expected: int, reported_chain_id: int) -> None:
    if reported_chain_id != expected:
        raise ConfigError(
            {"CHAIN_ID": f"is {expected} but the node at RPC_URL reports {reported_chain_id}"}
        )


def check_markets(
    service: str,
    wanted: dict[str, str],
    on_chain: list[str],
    known_pairs: dict[str, str],
    position_manager: str,
) -> None:
    """The one rule for MARKETS in every service: a pair the PositionManager does not list
    stops the service (ConfigError, exit 2) naming it and the markets that exist.
    `wanted`: market id (0x hex) -> pair asked for; `on_chain`: the ids the contract lists;
    `known_pairs`: id -> pair where known (the deployment file), else the id is shown."""
    listed = {m.lower() for m in on_chain}
    unknown = [pair for mid, pair in wanted.items() if mid.lower() not in listed]
    if not unknown:
        return
    existing = [known_pairs.get(m.lower(), m) for m in on_chain]
    raise ConfigError(
        {
            "MARKETS": f"{', '.join(unknown)} {'is not a market' if len(unknown) == 1 else 'are not markets'} "
            f"of PositionManager {position_manager}; its markets: "
            f"{', '.join(existing) if existing else '(none)'}"
        },
        service,
    )


def verify_chain_id_sync(settings: BaseServiceSettings, timeout: float = 10.0) -> int:
    """Ask the node at RPC_URL for its chain id (eth_chainId) and check it against CHAIN_ID."""
    import httpx

    resp = httpx.post(
        settings.rpc_url,
        json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
        timeout=timeout,
    )
    resp.raise_for_status()
    reported = int(resp.json()["result"], 16)
    check_chain_id(settings, reported)
    return reported
