"""`perpex bench keeper` end to end at a tiny size: the last stdout line is the JSON object."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
KEYS = {
    "positions",
    "liquidatable",
    "liquidated",
    "blocks_to_last",
    "health_rpc_calls_per_block",
    "naive_rpc_calls_per_block",
    "rpc_ratio",
}


def test_bench_prints_one_json_object_last() -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "perpex_cli.main",
            "bench",
            "keeper",
            "--positions",
            "200",
            "--liquidatable",
            "10",
            "--near",
            "4",
            "--block-time",
            "1",
            "--naive-blocks",
            "1",
        ],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(result) == KEYS
    assert result["positions"] == 200 and result["liquidatable"] == 10
    assert result["liquidated"] == 10
    assert result["naive_rpc_calls_per_block"] >= 200
    assert result["rpc_ratio"] == round(
        result["naive_rpc_calls_per_block"] / result["health_rpc_calls_per_block"], 1
    )
