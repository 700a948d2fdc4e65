"""Scraping a running service's /metrics (on its HEALTH_PORT) and reading it with Prometheus'
own text parser, for the tests of every service."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import httpx
from prometheus_client.metrics_core import Metric
from prometheus_client.parser import text_string_to_metric_families


class Scrape:
    """One scrape: metric families by name (a counter's family name has no `_total`)."""

    def __init__(self, text: str):
        self.text = text
        self.families: dict[str, Metric] = {f.name: f for f in text_string_to_metric_families(text)}

    def family(self, name: str) -> Metric:
        assert name in self.families, f"{name} not exported; families: {sorted(self.families)}"
        return self.families[name]

    def samples(self, sample: str, **labels: str) -> list[Any]:
        """Every sample named `sample` (e.g. `perpex_x_total`, `perpex_h_bucket`) whose labels
        include `labels`."""
        family = sample
        for suffix in ("_total", "_bucket", "_count", "_sum", "_created"):
            if sample.endswith(suffix) and sample.removesuffix(suffix) in self.families:
                family = sample.removesuffix(suffix)
        return [
            s
            for s in self.family(family).samples
            if s.name == sample and all(_same(s.labels.get(k), v) for k, v in labels.items())
        ]

    def value(self, sample: str, **labels: str) -> float:
        found = self.samples(sample, **labels)
        assert len(found) == 1, f"{sample}{labels}: {found}"
        return float(found[0].value)

    def has(self, *names: str) -> None:
        missing = [n for n in names if n not in self.families]
        assert not missing, f"not exported: {missing}; families: {sorted(self.families)}"


async def scrape(port: int, host: str = "127.0.0.1") -> Scrape:
    async with httpx.AsyncClient(timeout=5) as client:
        resp = await client.get(f"http://{host}:{port}/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain"), resp.headers
    return Scrape(resp.text)


async def scrape_until(
    port: int, check: Callable[[Scrape], bool], within: float = 30.0, what: str = "metrics"
) -> Scrape:
    """Scrape until `check(scrape)` holds (assertion errors count as not yet)."""
    deadline = time.monotonic() + within
    last: Scrape | None = None
    error: Exception | None = None
    while time.monotonic() < deadline:
        try:
            last = await scrape(port)
            if check(last):
                return last
        except (AssertionError, httpx.HTTPError) as exc:
            error = exc
        await asyncio.sleep(0.25)
    raise AssertionError(f"{what} not reached; last error {error!r}\n{last.text if last else ''}")


def _same(label: str | None, wanted: str) -> bool:
    """Equal label values; numbers compare as numbers (a bucket's le="3" or "3.0")."""
    if label == wanted:
        return True
    try:
        return label is not None and float(label) == float(wanted)
    except ValueError:
        return False
