"""OpenTelemetry set-up shared by every service.

`setup_telemetry(service)` configures tracer and meter providers from the standard OTEL_*
variables: an OTLP/HTTP exporter when OTEL_EXPORTER_OTLP_ENDPOINT (or the per-signal variant)
is set, nothing exported otherwise. Tests pass their own in-memory exporter/reader.

W3C trace context crosses Kafka in message headers (`traceparent`, `tracestate`): the indexer
stores `trace_carrier()` of its span with each outbox row and sends it as headers; consumers call `context_from_headers()` and start their
span with it as parent, so one trace follows an event from chain log to liquidation receipt.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Sequence

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.propagate import extract, inject
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor

log = logging.getLogger(__name__)
_configured = False


def _otlp_enabled(signal: str) -> bool:
    if os.environ.get("OTEL_SDK_DISABLED", "").lower() == "true":
        return False
    return bool(
        os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
        or os.environ.get(f"OTEL_EXPORTER_OTLP_{signal}_ENDPOINT")
    )


def setup_telemetry(
    service_name: str,
    span_processors: Sequence[SpanProcessor] = (),
    metric_readers: Sequence[MetricReader] = (),
    force: bool = False,
) -> None:
    """Install global tracer/meter providers once per process (or again with force=True)."""
    global _configured
    if _configured and not force:
        return
    resource = Resource.create(
        {"service.name": os.environ.get("OTEL_SERVICE_NAME", service_name)}
    )  # OTEL_RESOURCE_ATTRIBUTES is merged by Resource.create
    # Tracers obtained before stay bound to the provider that was installed then (OTel's proxy
    # tracers bind once), so an installed SDK provider is extended, never replaced.
    existing = trace.get_tracer_provider()
    tracer_provider = (
        existing if isinstance(existing, TracerProvider) else TracerProvider(resource=resource)
    )
    reuse = tracer_provider is existing
    for processor in span_processors:
        tracer_provider.add_span_processor(processor)
    readers = list(metric_readers)
    if _otlp_enabled("TRACES") and not reuse:
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

        tracer_provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    if _otlp_enabled("METRICS"):
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

        readers.append(PeriodicExportingMetricReader(OTLPMetricExporter()))
    _set_providers(
        None if reuse else tracer_provider, MeterProvider(resource=resource, metric_readers=readers)
    )
    _configured = True


def add_span_processor(processor: SpanProcessor, service_name: str = "perpex") -> None:
    """Send finished spans to `processor` too (e.g. an in-memory exporter in tests). Tracers
    obtained earlier stay bound to the installed provider, so extend it rather than replace it."""
    current = trace.get_tracer_provider()
    if isinstance(current, TracerProvider):
        current.add_span_processor(processor)
    else:
        setup_telemetry(service_name, span_processors=[processor], force=True)


def _set_providers(tracer_provider: TracerProvider | None, meter_provider: MeterProvider) -> None:
    # The API refuses to replace a global provider; tests need to, so reset the guard.
    if tracer_provider is not None:
        trace._TRACER_PROVIDER_SET_ONCE._done = False  # type: ignore[attr-defined]
        trace._TRACER_PROVIDER = None  # type: ignore[attr-defined]
        trace.set_tracer_provider(tracer_provider)
    metrics._internal._METER_PROVIDER_SET_ONCE._done = False  # type: ignore[attr-defined]
    metrics._internal._METER_PROVIDER = None  # type: ignore[attr-defined]
    metrics.set_meter_provider(meter_provider)


def tracer(name: str) -> trace.Tracer:
    return trace.get_tracer(name)


def meter(name: str) -> metrics.Meter:
    return metrics.get_meter(name)


def context_from_headers(headers: Iterable[tuple[str, bytes]] | None) -> otel_context.Context:
    carrier = {  # a header without a value (None) or key is no trace context: skipped
        k: v.decode(errors="replace") for k, v in (headers or ()) if isinstance(k, str) and v
    }
    return extract(carrier)


def trace_carrier() -> dict[str, str]:
    """W3C trace context of the current span as a dict (e.g. to store beside an outbox row),
    keys sorted: every copy of it (Kafka headers, an event's `trace`, a jsonb column, which
    keeps its own key order) then reads back the same."""
    carrier: dict[str, str] = {}
    inject(carrier)
    return dict(sorted(carrier.items()))


def context_from_carrier(carrier: dict[str, str] | None) -> otel_context.Context:
    return extract(carrier or {})


def current_trace_id() -> str | None:
    ctx = trace.get_current_span().get_span_context()
    return format(ctx.trace_id, "032x") if ctx.is_valid else None
