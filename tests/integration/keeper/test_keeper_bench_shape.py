"""`perpex bench keeper --fault-rate 0.1` end to end at a tiny size: the last stdout line is
the JSON object; the keeper liquidates everything through the fault proxy, with no reverted
transaction and no nonce gap."""

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
    "reverted_txs",
    "nonce_gaps",
    "fault_rate",
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
            "--fault-rate",
            "0.1",
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
    assert result["reverted_txs"] == 0 and result["nonce_gaps"] == 0
    assert result["fault_rate"] == 0.1
    assert "fault proxy:" in proc.stderr  # the keeper did go through it
    assert result["naive_rpc_calls_per_block"] >= 200
    assert result["rpc_ratio"] == round(
        result["naive_rpc_calls_per_block"] / result["health_rpc_calls_per_block"], 1
    )
