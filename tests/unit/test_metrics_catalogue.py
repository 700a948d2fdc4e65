"""One catalogue of metric names: every `perpex_*` instrument the services define is listed in
docs/observability.md with its type, and the Grafana dashboard's Prometheus panels use only those
names, with the suffix their type gets in Prometheus (a counter's `_total`, a histogram's
`_bucket`/`_sum`/`_count`) and only labels the metrics (or the scrape) carry. That the services
really export them is what each service's /metrics test shows, from the running process."""

from __future__ import annotations

import json
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "observability.md"
GRAFANA = ROOT / "deploy" / "helm" / "perpex" / "dashboards" / "perpex-grafana.json"
DEFINED = re.compile(r"""["'](perpex_[a-z0-9_]+)["']""")
ROW = re.compile(r"^\| `(perpex_[a-z0-9_]+)` \| (counter|gauge|histogram) \|([^|]*)\|", re.M)
NAME = re.compile(r"\bperpex_[a-z0-9_]+")
SUFFIXES = {"counter": ("_total",), "histogram": ("_bucket", "_sum", "_count"), "gauge": ("",)}
# labels a scrape adds (Prometheus target labels and the chart's monitors' relabelling) or
# PromQL's own
# `perpex_*` strings that name something else
NOT_METRICS = {"perpex_graphql"}  # the GraphQL read-only role (services/dashboard/settings.py)
SCRAPE_LABELS = {"job", "instance", "pod", "namespace", "container", "perpex_market", "le"}


def defined_names() -> set[str]:
    names: set[str] = set()
    for folder in ("services", "shared", "perpex_cli"):
        for path in (ROOT / folder).rglob("*.py"):
            names.update(DEFINED.findall(path.read_text()))
    return names - NOT_METRICS


def catalogue() -> dict[str, tuple[str, set[str]]]:
    """name -> (type, labels) from the doc's tables."""
    out: dict[str, tuple[str, set[str]]] = {}
    for name, kind, labels in ROW.findall(DOC.read_text()):
        assert name not in out, f"{name} listed twice"
        out[name] = (kind, set(re.findall(r"`([a-z_]+)`", labels)))
    return out


def prometheus_targets() -> list[tuple[str, str, str]]:
    """(panel title, expr, legend) of every Prometheus panel target."""
    dashboard = json.loads(GRAFANA.read_text())
    return [
        (panel["title"], target["expr"], target.get("legendFormat", ""))
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target["datasource"]["uid"] == "${prometheus}"
    ]


def test_every_defined_metric_is_in_the_catalogue_and_nothing_else() -> None:
    defined = defined_names()
    listed = set(catalogue())
    assert defined - listed == set(), "defined but not in docs/observability.md"
    assert listed - defined == set(), "in docs/observability.md but defined nowhere"


def test_the_grafana_panels_use_catalogue_names_with_their_type_suffix() -> None:
    names = catalogue()
    targets = prometheus_targets()
    assert targets
    used: set[str] = set()
    for title, expr, legend in targets:
        assert expr.count("(") == expr.count(")"), (title, expr)
        labels: set[str] = set(SCRAPE_LABELS)
        for sample in NAME.findall(re.sub(r"\bby \([^)]*\)", "", expr)):  # not the labels
            found = [
                (base, kind)
                for base, (kind, _) in names.items()
                for suffix in SUFFIXES[kind]
                if sample == base + suffix
            ]
            assert len(found) == 1, f"{title}: {sample} is no scraped name of the catalogue"
            base, kind = found[0]
            if kind == "counter" or sample.endswith("_bucket"):
                assert re.search(rf"(rate|increase)\({sample}\[", expr), (title, sample)
            used.add(base)
            labels |= names[base][1]
        for group in re.findall(r"\bby \(([^)]*)\)", expr):
            wanted = {label.strip() for label in group.split(",")}
            assert wanted <= labels, (title, wanted - labels)
        assert set(re.findall(r"\{\{(\w+)\}\}", legend)) <= labels, (title, legend)
    # what issue 16 asks the dashboard to show, beside the SQL panels
    for wanted in (
        "perpex_indexer_blocks_behind",
        "perpex_indexer_events",
        "perpex_indexer_chunk_size_blocks",
        "perpex_indexer_reorgs",
        "perpex_indexer_reorg_depth_blocks",
        "perpex_indexer_outbox_backlog",
        "perpex_indexer_outbox_oldest_unsent_age_seconds",
        "perpex_keeper_book_positions",
        "perpex_keeper_liquidatable_positions",
        "perpex_keeper_liquidation_latency_blocks",
        "perpex_keeper_tx_sent",
        "perpex_keeper_tx_replaced",
        "perpex_keeper_tx_reverted",
        "perpex_keeper_wallet_balance_eth",
        "perpex_keeper_nonce_gap",
        "perpex_funding_next_update_time",
        "perpex_funding_last_outcome",
        "perpex_dashboard_websocket_clients",
    ):
        assert wanted in used, wanted
