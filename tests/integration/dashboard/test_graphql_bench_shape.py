"""`perpex bench graphql` with tiny numbers: it runs end to end and its last stdout line is the
JSON object the issue asks for."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]


def test_bench_prints_json_last_line() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "bench", "graphql", "--positions", "600",
         "--clients", "3", "--duration", "1.5", "--warmup", "0.3", "--commit-interval", "0.4",
         "--think-ms", "5"],
        cwd=REPO, capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert {"queries_per_s", "p50_ms", "p99_ms"} <= set(result)
    assert result["queries"] > 0 and result["errors"] == 0
    assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
    assert result["queries_per_s"] == round(result["queries"] / 1.5, 1)
    assert (result["clients"], result["positions"]) == (3, 600)
    assert result["indexer_commits"] >= 2
    assert "600 positions loaded" in proc.stderr
