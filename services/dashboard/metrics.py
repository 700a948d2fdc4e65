"""The dashboard's metrics (OpenTelemetry; OTLP when configured, /metrics on HEALTH_PORT
always: docs/observability.md), read from every live Dashboard in the process:

- perpex_dashboard_websocket_clients        gauge: live WebSocket subscribers: clients of /ws and
                                            GraphQL subscriptions (over graphql-transport-ws)
- perpex_dashboard_websocket_messages       counter: live messages published to the clients
- perpex_dashboard_feed_live                gauge: 1 while the Kafka feed follows the topic

Instruments are created once per meter provider.
"""

from __future__ import annotations

import weakref
from typing import Any

from opentelemetry import metrics

from shared.metrics import observe
from shared.telemetry import meter

_live: weakref.WeakSet[Any] = weakref.WeakSet()
_provider: Any = None


def register(dashboard: Any) -> None:
    """Report `dashboard` (a services.dashboard.app.Dashboard) from now on."""
    global _provider
    _live.add(dashboard)
    provider = metrics.get_meter_provider()
    if _provider is provider:
        return
    _provider = provider
    m = meter("perpex.dashboard")
    m.create_observable_gauge(
        "perpex_dashboard_websocket_clients",
        [observe(lambda: sum(d.hub.clients for d in list(_live)))],
        description="live WebSocket subscribers: /ws clients and GraphQL subscriptions",
    )
    m.create_observable_counter(
        "perpex_dashboard_websocket_messages",
        [observe(lambda: sum(d.hub.published for d in list(_live)))],
        description="live messages published to the WebSocket clients",
    )
    m.create_observable_gauge(
        "perpex_dashboard_feed_live",
        [observe(lambda: [(1 if d.feed.live else 0, {}) for d in list(_live) if d.feed])],
        description="1 while the Kafka feed follows the topic (absent: feed off)",
    )
