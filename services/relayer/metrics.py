"""The relayer's metrics (OpenTelemetry; OTLP when configured, /metrics on HEALTH_PORT always:
docs/observability.md), per lane (`remote->home`, the deposits; `home->remote`, the
withdrawals), read from every live Relayer in the process:

- perpex_relayer_verified{lane}           counter: packets verified on the destination
- perpex_relayer_delivered{lane}          counter: packets delivered (lzReceive)
- perpex_relayer_delivery_refused{lane}   counter: deliveries the destination refused (retried)
- perpex_relayer_packets_in_flight{lane}  gauge: packets seen sent and not yet delivered
- perpex_relayer_blocks_behind{lane}      gauge: source chain head - last block scanned

The counters count since the process started (Prometheus' rate() and increase() handle the
reset at a restart). Instruments are created once per meter provider.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from opentelemetry import metrics

from shared.metrics import observe
from shared.telemetry import meter

# id -> Relayer (a dataclass, so unhashable: no WeakSet)
_live: weakref.WeakValueDictionary[int, Any] = weakref.WeakValueDictionary()
_provider: Any = None


def _per_lane(
    value: Callable[[Any], int | None],
) -> Callable[[], list[tuple[float, dict[str, str]]]]:
    def points() -> list[tuple[float, dict[str, str]]]:
        out = []
        for relayer in list(_live.values()):
            for lane in relayer.lanes:
                v = value(lane)
                if v is not None:
                    out.append((float(v), {"lane": lane.name}))
        return out

    return points


def _behind(lane: Any) -> int | None:
    if not lane.head:  # the source head not read yet
        return None
    return max(0, lane.head - lane.state.scanned_to)


def register(relayer: Any) -> None:
    """Report `relayer` (a services.relayer.relay.Relayer) from now on."""
    global _provider
    _live[id(relayer)] = relayer
    provider = metrics.get_meter_provider()
    if _provider is provider:
        return
    _provider = provider
    m = meter("perpex.relayer")
    for name, field, description in (
        ("perpex_relayer_verified", "verified", "packets verified on the destination"),
        ("perpex_relayer_delivered", "delivered", "packets delivered (lzReceive)"),
        ("perpex_relayer_delivery_refused", "refused", "deliveries refused (retried)"),
    ):
        m.create_observable_counter(
            name,
            [observe(_per_lane(lambda lane, field=field: getattr(lane, field)))],  # type: ignore[misc]
            description=description,
        )
    m.create_observable_gauge(
        "perpex_relayer_packets_in_flight",
        [observe(_per_lane(lambda lane: len(lane.state.pending)))],
        description="packets seen sent and not yet delivered, per lane",
    )
    m.create_observable_gauge(
        "perpex_relayer_blocks_behind",
        [observe(_per_lane(_behind))],
        description="source chain head - last block scanned, per lane",
    )
