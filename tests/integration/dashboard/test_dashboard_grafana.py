"""The Grafana dashboard (deploy/helm/perpex/dashboards/perpex-grafana.json): every panel's SQL
runs against the indexer's real schema and gives what the seeded rows imply."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest
import yaml
from dashboard_support import BTC, ETH, SOL, T0
from grafana_sql import expand, load_dashboard, panel_queries

ROOT = Path(__file__).resolve().parents[3]


async def test_every_panel_query_runs_on_the_indexer_schema(indexer_db: str) -> None:
    dashboard = load_dashboard()
    variable = next(v for v in dashboard["templating"]["list"] if v["name"] == "market")
    conn = await asyncpg.connect(indexer_db)
    try:
        options = await conn.fetch(variable["query"])
        assert {r["__value"]: r["__text"] for r in options} == {
            BTC: "BTC/USDT",
            ETH: "ETH/USDT",
            SOL: "SOL/USDT",  # known only from positions.market
        }
        markets = {"market": [r["__value"] for r in options]}
        start, end = T0 - 3600, int(time.time())
        results = {}
        for title, fmt, sql in panel_queries(dashboard):
            rows = await conn.fetch(expand(sql, start, end, 3600, markets))
            results[title] = rows
            if fmt == "time_series":
                assert rows, title
                assert {"time", "metric", "value"} <= set(rows[0].keys()), title
        only_eth = await conn.fetch(
            expand(
                dict((t, s) for t, _, s in panel_queries(dashboard))["Open positions"],
                start,
                end,
                3600,
                {"market": [ETH]},
            )
        )
    finally:
        await conn.close()

    assert results["Open positions"][0][0] == 5
    assert only_eth[0][0] == 3
    assert results["Open interest (quote)"][0][0] == pytest.approx(5000 + 8000 + 6000 + 500)
    assert results["Liquidations (time range)"][0][0] == 2
    assert results["Liquidator rewards (time range)"][0][0] == pytest.approx(11)
    assert results["Last synced block"][0][0] == 63
    assert results["Indexer lag"][0][0] >= 0
    by_market = {r["market"]: (r["long"], r["short"]) for r in results["Open positions by market"]}
    assert by_market == {"BTC/USDT": (0, 1), "ETH/USDT": (1, 2), "SOL/USDT": (1, 0)}
    oi = {r["market"]: (r["long"], r["short"]) for r in results["Open interest by market (quote)"]}
    assert oi["ETH/USDT"] == (pytest.approx(5000), pytest.approx(8000))
    liq = results["Liquidations over time"]
    assert sorted((r["metric"], r["value"]) for r in liq) == [("BTC/USDT", 1), ("ETH/USDT", 1)]
    funding = results["Funding rate history (% per funding interval)"]
    assert len(funding) == 48
    eth_last = [r for r in funding if r["metric"] == "ETH/USDT"][-1]
    assert eth_last["value"] == pytest.approx((math.sin(23 / 3.0) * 1.2e14 + 2e13) / 1e16)
    assert [r["token"] for r in results["Recent liquidations"]] == ["6", "4"]
    assert results["Indexer sync status"][0]["last_synced_block"] == 63


def test_dashboard_shape() -> None:
    dashboard = load_dashboard()
    assert dashboard["uid"] == "perpex-overview"
    names = [v["name"] for v in dashboard["templating"]["list"]]
    assert names == ["datasource", "market"]
    assert dashboard["templating"]["list"][0]["query"] == "grafana-postgresql-datasource"
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}"
            assert target["rawQuery"] is True and target["format"] in ("table", "time_series")
    titles = {p["title"] for p in dashboard["panels"]}
    for wanted in (
        "Open positions by market",
        "Liquidations over time",
        "Funding rate history (% per funding interval)",
        "Indexer lag",
    ):
        assert wanted in titles


HELM_PYTHON = ROOT / ".venv-helm" / "bin" / "python"


@pytest.mark.skipif(
    not HELM_PYTHON.exists(),
    reason="tool missing: .venv-helm (helm-sdkpy, Python >= 3.12) is absent",
)
@pytest.mark.parametrize("enabled", [False, True])
def test_configmap_template_lints(tmp_path: Path, enabled: bool) -> None:
    """The real Helm engine renders the chart with the ConfigMap on and off (a temporary copy
    of the chart, with grafana.dashboard.enabled set and allowed by its schema)."""
    chart = tmp_path / "perpex"
    shutil.copytree(ROOT / "deploy/helm/perpex", chart)
    values = yaml.safe_load((chart / "values.yaml").read_text())
    values.setdefault("grafana", {}).setdefault("dashboard", {})["enabled"] = enabled
    (chart / "values.yaml").write_text(yaml.safe_dump(values))
    schema = json.loads((chart / "values.schema.json").read_text())
    schema["properties"].setdefault(
        "grafana",
        {"type": "object", "properties": {"dashboard": {"type": "object"}}},
    )
    (chart / "values.schema.json").write_text(json.dumps(schema))
    result = subprocess.run(
        [str(HELM_PYTHON), str(ROOT / "tests/helm/helm_action.py"), "lint", str(chart)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["errors"] == 0, report
    assert all(m["severity"] < 3 for m in report["messages"]), report
    template = (chart / "templates/grafana-dashboard-configmap.yaml").read_text()
    assert 'grafana_dashboard: "1"' in template
    assert '.Files.Get "dashboards/perpex-grafana.json"' in template
