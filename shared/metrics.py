"""Prometheus exposition of the services' OpenTelemetry metrics: GET /metrics on HEALTH_PORT.

`setup_telemetry` (shared/telemetry.py) gives the meter provider a Prometheus reader
(opentelemetry-exporter-prometheus) with a registry of its own, beside the OTLP exporter when
OTEL_EXPORTER_OTLP_ENDPOINT is set. A scrape collects every instrument at that moment
(observable gauges call back into the service), so /metrics always shows current values.

Names are the instruments' own (`perpex_*`); a counter gets Prometheus' `_total` suffix. An
instrument's unit would be appended to its name too (`s` -> `_seconds`), so the services give
their units in the names and none as OTel units. Instrumentation-scope labels are left out.

`observe(fn)` turns a function returning a number (None: no point), or (value, attributes)
pairs, into an observable instrument's callback.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from opentelemetry.metrics import CallbackOptions, Observation
from opentelemetry.sdk.metrics.export import MetricReader

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

_registry: Any = None  # the current reader's prometheus_client CollectorRegistry


def prometheus_reader() -> MetricReader:
    """A new Prometheus reader whose registry /metrics serves from now on (one per meter
    provider: a reader belongs to one provider)."""
    global _registry
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from prometheus_client import CollectorRegistry

    registry = CollectorRegistry(auto_describe=False)
    reader = PrometheusMetricReader(registry=registry, scope_info_enabled=False)
    _registry = registry
    return reader


def exposition() -> bytes | None:
    """The current metrics in the Prometheus text format; None when none are set up."""
    if _registry is None:
        return None
    from prometheus_client import generate_latest

    return bytes(generate_latest(_registry))


Points = float | int | None | Iterable[tuple[float, dict[str, str]]]


def observe(fn: Callable[[], Points]) -> Callable[[CallbackOptions], Iterable[Observation]]:
    """A callback for an observable instrument: `fn()` gives a number (None: nothing to report
    now) or (value, attributes) pairs. A failing `fn` reports nothing rather than breaking
    the scrape."""

    def callback(_: CallbackOptions) -> Iterable[Observation]:
        try:
            value = fn()
        except Exception:
            return []
        if value is None:
            return []
        if isinstance(value, (int, float)):
            return [Observation(value)]
        return [Observation(v, attrs) for v, attrs in value]

    return callback
