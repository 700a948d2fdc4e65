"""Funding updater metrics (OpenTelemetry, through shared.telemetry's meter; OTLP when
configured, /metrics always: docs/observability.md).

- perpex_funding_seconds_to_next_window{market}  observable gauge, chain seconds (0 when due)
- perpex_funding_next_update_time{market}        observable gauge, when the next window opens
                                                 (chain time, unix seconds)
- perpex_funding_overdue_seconds{market}         observable gauge, how long an open window waits
- perpex_funding_rate{market}                    observable gauge, last rate, fraction per interval
- perpex_funding_last_update_time{market}        observable gauge, lastFundingTime (unix seconds)
- perpex_funding_last_outcome{market,outcome}    observable gauge, 1 for the outcome of the
                                                 market's last attempt, 0 for the others
- perpex_funding_wallet_balance_eth              observable gauge
- perpex_funding_leader                          observable gauge, 1 while this replica leads
- perpex_funding_updates_sent{market}            counter: updateFundingRate transactions sent
- perpex_funding_updates_confirmed{market}       counter: ... that updated the rate
- perpex_funding_reverts{market,reason}          counter: simulations or receipts that reverted

Units are in the names, not OTel units (which Prometheus would append to the names again).

Observable gauges read every live updater in the process (a test may run two), so each
instrument is created once per meter provider.
"""

from __future__ import annotations

import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Counter, Observation

from shared.telemetry import meter


class Observable(Protocol):
    def metric_points(self) -> dict[str, list[tuple[float, dict[str, str]]]]: ...


_live: weakref.WeakSet[Any] = weakref.WeakSet()

GAUGES = {
    "perpex_funding_seconds_to_next_window": "chain seconds until the next funding window",
    "perpex_funding_next_update_time": "next funding window, chain time (unix seconds)",
    "perpex_funding_overdue_seconds": "chain seconds an open window has waited",
    "perpex_funding_rate": "last funding rate, fraction of the index per interval",
    "perpex_funding_last_update_time": "lastFundingTime, unix seconds",
    "perpex_funding_last_outcome": "1 for the outcome of the market's last attempt, else 0",
    "perpex_funding_wallet_balance_eth": "funding wallet balance (ETH)",
    "perpex_funding_leader": "1 while this replica is the funding leader",
}


@dataclass
class _Instruments:
    provider: Any
    sent: Counter
    confirmed: Counter
    reverts: Counter


_current: _Instruments | None = None


def _callback(name: str) -> Any:
    def observe(_: CallbackOptions) -> Iterable[Observation]:
        out: list[Observation] = []
        for updater in list(_live):
            for value, attrs in updater.metric_points().get(name, []):
                out.append(Observation(value, attrs))
        return out

    return observe


def instruments() -> _Instruments:
    global _current
    provider = metrics.get_meter_provider()
    if _current is None or _current.provider is not provider:
        m = meter("perpex.funding")
        for name, description in GAUGES.items():
            m.create_observable_gauge(name, callbacks=[_callback(name)], description=description)
        _current = _Instruments(
            provider=provider,
            sent=m.create_counter(
                "perpex_funding_updates_sent", description="updateFundingRate transactions sent"
            ),
            confirmed=m.create_counter(
                "perpex_funding_updates_confirmed",
                description="updateFundingRate transactions that updated the rate",
            ),
            reverts=m.create_counter(
                "perpex_funding_reverts",
                description="updateFundingRate reverts (simulated or mined)",
            ),
        )
    return _current


def register(updater: Observable) -> None:
    instruments()
    _live.add(updater)


def unregister(updater: Observable) -> None:
    _live.discard(updater)


def points(updater: Any) -> dict[str, list[tuple[float, dict[str, str]]]]:
    """Every gauge's points for one FundingUpdater."""
    from services.funding.rates import rate_fraction

    out: dict[str, list[tuple[float, dict[str, str]]]] = {name: [] for name in GAUGES}
    for state in updater.markets.values():
        attrs = {"market": state.ref.pair}
        last = state.last_outcome
        if last is not None:
            for outcome in type(last):  # every UpdateOutcome: 1 for the last one
                out["perpex_funding_last_outcome"].append(
                    (1 if outcome is last else 0, {**attrs, "outcome": outcome.value})
                )
        snap = state.snapshot
        if snap is None:
            continue
        now = updater._chain_now(state)
        out["perpex_funding_seconds_to_next_window"].append(
            (max(0, snap.next_funding_time - now), attrs)
        )
        out["perpex_funding_next_update_time"].append((snap.next_funding_time, attrs))
        out["perpex_funding_overdue_seconds"].append((max(0, now - snap.next_funding_time), attrs))
        out["perpex_funding_rate"].append((float(rate_fraction(snap.rate_wad)), attrs))
        out["perpex_funding_last_update_time"].append((snap.last_funding_time, attrs))
    sender = updater.sender
    if sender.last_balance_wei is not None:
        out["perpex_funding_wallet_balance_eth"].append(
            (sender.last_balance_wei / 1e18, {"wallet": sender.address})
        )
    out["perpex_funding_leader"].append(
        (1 if updater.leader.is_leader else 0, {"election": updater.leader.name})
    )
    return out
