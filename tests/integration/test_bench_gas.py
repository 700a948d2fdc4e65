"""`perpex bench gas` measures real receipts and prints its figures as one JSON object last."""

from __future__ import annotations

import json
import os
import subprocess
import sys

TARGETS = {"openPosition": 250_000, "liquidatePosition": 200_000, "updateFundingRate": 80_000}


def test_bench_gas_prints_json_within_targets() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "bench", "gas"],
        capture_output=True, text=True, timeout=300, env=os.environ.copy(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    figures = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(figures) >= {
        "openPosition",
        "closePosition",
        "liquidatePosition",
        "updateFundingRate",
    }
    assert all(isinstance(v, int) and v > 21_000 for v in figures.values())
    for name, limit in TARGETS.items():
        assert figures[name] <= limit, (name, figures[name])
