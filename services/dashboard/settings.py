"""Dashboard settings: the shared service settings plus the HTTP server and fan-out limits.

The page, the API, /ws and the probes are served on DASHBOARD_PORT; the probes are also served
alone on HEALTH_PORT, like every other Perp-EX service (0 turns that listener off).

The dashboard reads PostgreSQL (DB_URI) and follows Kafka (KAFKA_BOOTSTRAP_SERVERS,
KAFKA_TOPIC); it never talks to the chain, so RPC_URL has a harmless default here.
"""

from __future__ import annotations

import re
from typing import Any

from pydantic import Field, field_validator

from shared.config import BaseServiceSettings, load_settings, redact_dsn


class DashboardSettings(BaseServiceSettings):
    rpc_url: str = Field(default="http://127.0.0.1:8545", description="unused by the dashboard")
    dashboard_host: str = Field(default="0.0.0.0", min_length=1)
    dashboard_port: int = Field(default=8000, ge=1, le=65535)
    health_port: int = Field(
        default=8080, ge=0, le=65535, description="probes only (/healthz, /readyz); 0: off"
    )
    dashboard_ws_queue: int = Field(
        default=256, ge=1, le=100_000, description="messages buffered per WebSocket client"
    )
    dashboard_max_clients: int = Field(
        default=1000, ge=1, le=100_000, description="concurrent WebSocket clients"
    )
    dashboard_cache_ttl: float = Field(
        default=2.0,
        ge=0,
        le=60,
        description="seconds an API answer is reused (dropped at once on a live event); 0: off",
    )
    dashboard_db_pool_size: int = Field(default=5, ge=1, le=100)
    dashboard_kafka_feed: bool = Field(
        default=True, description="follow KAFKA_TOPIC and push events on /ws"
    )
    # ---- /graphql (docs/graphql.md) ----
    dashboard_graphql: bool = Field(default=True, description="serve /graphql")
    dashboard_graphql_db_uri: str | None = Field(
        default=None,
        description="a SELECT-only login for GraphQL; unset: DB_URI as DASHBOARD_GRAPHQL_ROLE",
    )
    dashboard_graphql_role: str = Field(
        default="perpex_graphql", description="NOLOGIN role with SELECT only, created when missing"
    )
    dashboard_graphql_pool_size: int = Field(default=10, ge=1, le=100)
    dashboard_graphql_timeout_ms: int = Field(
        default=5000, ge=100, le=600_000, description="statement timeout of GraphQL queries"
    )
    dashboard_graphql_max_depth: int = Field(default=10, ge=2, le=100)
    dashboard_graphql_max_cost: int = Field(default=10_000, ge=10, le=10_000_000)
    dashboard_graphql_max_aliases: int = Field(default=20, ge=0, le=1000)
    dashboard_graphql_max_tokens: int = Field(default=2000, ge=100, le=1_000_000)
    dashboard_graphql_max_subscriptions: int = Field(
        default=10, ge=1, le=1000, description="subscriptions per WebSocket connection"
    )
    dashboard_rpc_head: bool = Field(
        default=False,
        description="ask RPC_URL for the chain head (GraphQL syncStatus head and lag)",
    )

    @field_validator("dashboard_graphql_db_uri")
    @classmethod
    def _graphql_db_uri(cls, value: str | None) -> str | None:
        if value is None or not value.strip():
            return None
        return cls._db_uri(value.strip())  # the same checks as DB_URI, password never echoed

    @field_validator("dashboard_graphql_role")
    @classmethod
    def _graphql_role(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z_][a-z0-9_]{0,62}", value):
            raise ValueError(
                "must be a plain role name: lower-case letters, digits and _, not starting with "
                "a digit, at most 63 characters"
            )
        return value

    def safe_dump(self) -> dict[str, Any]:
        data = super().safe_dump()
        if self.dashboard_graphql_db_uri:
            data["dashboard_graphql_db_uri"] = redact_dsn(self.dashboard_graphql_db_uri)
        return data


def load_dashboard_settings(**overrides: object) -> DashboardSettings:
    return load_settings(DashboardSettings, "dashboard", **overrides)
