"""The operator's metrics (OpenTelemetry; OTLP when configured, /metrics on HEALTH_PORT always:
docs/observability.md):

- perpex_operator_reconciles{trigger,outcome}   counter: reconciles of a PerpMarket; trigger
                                                 `change` (create/update/resume) or `refresh`
                                                 (the status timer); outcome `ok`, `degraded`
                                                 (the market reports Degraded: an invalid spec,
                                                 a failed rollout) or `error` (retried)
- perpex_operator_reconcile_seconds{trigger}    histogram: how long one took
- perpex_operator_markets{state}                 gauge: PerpMarkets this operator handles, by
                                                 state (`ready`, `progressing`, `degraded`)

Instruments are created once per meter provider; the markets are tracked per process.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

from opentelemetry import metrics

from shared.metrics import observe
from shared.telemetry import meter

STATES = ("ready", "progressing", "degraded")
_markets: dict[tuple[str, str], str] = {}  # (namespace, name) -> state
_instruments: tuple[Any, Any, Any] | None = None


def _ensure() -> tuple[Any, Any, Any]:
    global _instruments
    provider = metrics.get_meter_provider()
    if _instruments is None or _instruments[0] is not provider:
        m = meter("perpex.operator")
        reconciles = m.create_counter(
            "perpex_operator_reconciles",
            description="PerpMarket reconciles, by trigger and outcome",
        )
        seconds = m.create_histogram(
            "perpex_operator_reconcile_seconds",
            description="duration of one PerpMarket reconcile",
            explicit_bucket_boundaries_advisory=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
        )

        def by_state() -> list[tuple[float, dict[str, str]]]:
            counts = Counter(_markets.values())
            return [(counts.get(state, 0), {"state": state}) for state in STATES]

        m.create_observable_gauge(
            "perpex_operator_markets",
            [observe(by_state)],
            description="PerpMarkets this operator handles, by state",
        )
        _instruments = (provider, reconciles, seconds)
    return _instruments


def state_of(status: Mapping[str, Any]) -> str:
    """A market's state from its status conditions."""
    conditions = {c.get("type"): c.get("status") for c in status.get("conditions", [])}
    if conditions.get("Degraded") == "True":
        return "degraded"
    if conditions.get("Ready") == "True":
        return "ready"
    return "progressing"


def reconciled(
    key: tuple[str, str],
    trigger: str,
    status: Mapping[str, Any],
    error: str | None,
    seconds: float,
) -> None:
    """One reconcile of the market `key` (namespace, name) finished."""
    _, reconciles, histogram = _ensure()
    state = state_of(status)
    outcome = "error" if error is not None else "degraded" if state == "degraded" else "ok"
    reconciles.add(1, {"trigger": trigger, "outcome": outcome})
    histogram.record(seconds, {"trigger": trigger})
    _markets[key] = state


def deleted(key: tuple[str, str]) -> None:
    _ensure()
    _markets.pop(key, None)


def start() -> None:
    """Create the instruments now (so /metrics shows them before the first reconcile)."""
    _ensure()
