"""A minimal OTLP/HTTP trace receiver for the demo: the services export their spans to it
over the standard OTLP protocol (protobuf over HTTP, POST /v1/traces), and the demo reads the
collected spans back to find the trace that links a chain event to its liquidation."""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field

from opentelemetry.proto.collector.trace.v1 import trace_service_pb2
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from shared.http_server import serve_in_thread


@dataclass(frozen=True)
class SinkSpan:
    trace_id: str
    span_id: str
    parent_span_id: str
    name: str
    service: str
    attributes: dict[str, str]


@dataclass
class OtlpSink:
    spans: list[SinkSpan] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def ingest(self, body: bytes) -> int:
        request = trace_service_pb2.ExportTraceServiceRequest()
        request.ParseFromString(body)
        found: list[SinkSpan] = []
        for resource_spans in request.resource_spans:
            service = next(
                (
                    a.value.string_value
                    for a in resource_spans.resource.attributes
                    if a.key == "service.name"
                ),
                "unknown",
            )
            for scope_spans in resource_spans.scope_spans:
                for span in scope_spans.spans:
                    attrs = {
                        a.key: (
                            a.value.string_value or str(a.value.int_value or a.value.bool_value)
                        )
                        for a in span.attributes
                    }
                    found.append(
                        SinkSpan(
                            span.trace_id.hex(),
                            span.span_id.hex(),
                            span.parent_span_id.hex(),
                            span.name,
                            service,
                            attrs,
                        )
                    )
        with self._lock:
            self.spans.extend(found)
        return len(found)

    def trace(self, trace_id: str) -> list[SinkSpan]:
        with self._lock:
            return [s for s in self.spans if s.trace_id == trace_id]

    def traces_with(self, *services: str) -> dict[str, list[SinkSpan]]:
        """Trace ids whose spans come from every one of `services`."""
        with self._lock:
            by_trace: dict[str, list[SinkSpan]] = {}
            for span in self.spans:
                by_trace.setdefault(span.trace_id, []).append(span)
        return {
            tid: spans
            for tid, spans in by_trace.items()
            if set(services) <= {s.service for s in spans}
        }

    def app(self) -> Starlette:
        async def traces(request: Request) -> Response:
            self.ingest(await request.body())
            return Response(
                trace_service_pb2.ExportTraceServiceResponse().SerializeToString(),
                media_type="application/x-protobuf",
            )

        async def ignore(_: Request) -> Response:  # metrics/logs are accepted and dropped
            return Response(b"", media_type="application/x-protobuf")

        return Starlette(
            routes=[
                Route("/v1/traces", traces, methods=["POST"]),
                Route("/v1/metrics", ignore, methods=["POST"]),
                Route("/v1/logs", ignore, methods=["POST"]),
            ]
        )


def start_sink_thread(sink: OtlpSink, port: int) -> Callable[[], None]:
    """Serve `sink` on 127.0.0.1:`port` from a background thread; returns a stop function."""
    return serve_in_thread(sink.app(), "127.0.0.1", port)
