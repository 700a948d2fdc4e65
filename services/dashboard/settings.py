"""Dashboard settings: the shared service settings plus the HTTP server and fan-out limits.

The page, the API, /ws and the probes are served on DASHBOARD_PORT; the probes are also served
alone on HEALTH_PORT, like every other Perp-EX service (0 turns that listener off).

The dashboard reads PostgreSQL (DB_URI) and follows Kafka (KAFKA_BOOTSTRAP_SERVERS,
KAFKA_TOPIC); it never talks to the chain, so RPC_URL has a harmless default here.
"""

from __future__ import annotations

from pydantic import Field

from shared.config import BaseServiceSettings, load_settings


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


def load_dashboard_settings(**overrides: object) -> DashboardSettings:
    return load_settings(DashboardSettings, "dashboard", **overrides)
