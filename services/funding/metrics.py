"""Funding updater metrics (OpenTelemetry, through shared.telemetry's meter).

- perpex_funding_seconds_to_next_window{market}  observable gauge, chain seconds (0 when due)
- perpex_funding_overdue_seconds{market}         observable gauge, how long an open window waits
- perpex_funding_rate{market}                    observable gauge, last rate, fraction per interval
- perpex_funding_last_update_time{market}        observable gauge, lastFundingTime (unix seconds)
- perpex_funding_wallet_balance_eth              observable gauge
- perpex_funding_leader                          observable gauge, 1 while this replica leads
- perpex_funding_updates_sent{market}            counter: updateFundingRate transactions sent
- perpex_funding_updates_confirmed{market}       counter: ... that updated the rate
- perpex_funding_reverts{market,reason}          counter: simulations or receipts that reverted

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
    "perpex_funding_seconds_to_next_window": ("s", "chain seconds until the next funding window"),
    "perpex_funding_overdue_seconds": ("s", "chain seconds an open window has waited"),
    "perpex_funding_rate": ("1", "last funding rate, fraction of the index per interval"),
    "perpex_funding_last_update_time": ("s", "lastFundingTime, unix seconds"),
    "perpex_funding_wallet_balance_eth": ("ETH", "funding wallet balance"),
    "perpex_funding_leader": ("1", "1 while this replica is the funding leader"),
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
        for name, (unit, description) in GAUGES.items():
            m.create_observable_gauge(
                name, callbacks=[_callback(name)], unit=unit, description=description
            )
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
