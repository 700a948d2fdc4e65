"""The shared back-off: doubling from `initial`, capped, jitter within its fraction."""

from __future__ import annotations

from shared.backoff import backoff_delay


def test_doubles_from_initial_up_to_the_cap() -> None:
    assert [backoff_delay(n, 0.5, 5.0) for n in range(0, 7)] == [0.0, 0.5, 1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff_delay(10_000, 0.5, 30.0) == 30.0  # no overflow however many failures


def test_jitter_spreads_within_its_fraction() -> None:
    delays = {backoff_delay(3, 1.0, 60.0, jitter=0.2) for _ in range(200)}
    assert all(3.2 <= d <= 4.8 for d in delays) and len(delays) > 100
