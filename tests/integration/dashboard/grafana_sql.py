"""Grafana's PostgreSQL macros and variables, expanded the way Grafana would for a time range,
so the Grafana dashboard's SQL can be run against the real schema in tests."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

GRAFANA_JSON = (
    Path(__file__).resolve().parents[3] / "deploy/helm/perpex/dashboards/perpex-grafana.json"
)


def load_dashboard() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(GRAFANA_JSON.read_text())
    return data


def panel_queries(dashboard: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(panel title, target format, raw SQL) for every PostgreSQL panel target (the
    Prometheus panels are checked by tests/unit/test_metrics_catalogue.py)."""
    return [
        (panel["title"], target["format"], target["rawSql"])
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
        if target["datasource"]["uid"] == "${datasource}"
    ]


def expand(sql: str, start: int, end: int, interval_s: int, variables: dict[str, list[str]]) -> str:
    """Expand the macros this dashboard uses: $__unixEpochFilter, $__unixEpochGroupAlias and
    multi-value text variables (quoted and comma-separated, as Grafana's PostgreSQL source)."""
    sql = re.sub(
        r"\$__unixEpochFilter\(([^)]+)\)",
        lambda m: f"{m.group(1)} >= {start} AND {m.group(1)} <= {end}",
        sql,
    )
    sql = re.sub(
        r"\$__unixEpochGroupAlias\(([^,]+),\s*\$__interval\)",
        lambda m: f'floor({m.group(1)} / {interval_s}) * {interval_s} AS "time"',
        sql,
    )
    for name, values in variables.items():
        quoted = ",".join("'" + v.replace("'", "''") + "'" for v in values) or "NULL"
        sql = sql.replace(f"${name}", quoted)
    assert "$" not in sql.replace("$$", ""), f"unexpanded macro in: {sql}"
    return sql
