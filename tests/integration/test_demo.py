"""`perpex demo --exit`: the whole stack as separate processes, one market played through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from perpex_dev.devstack.ports import free_port


def test_demo_liquidates_and_funds_and_links_a_trace(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "demo", "--exit",
         "--data-dir", str(tmp_path / "demo"), "--dashboard-port", str(free_port())],
        capture_output=True, text=True, timeout=600, env=os.environ.copy(),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert set(summary) == {
        "opened", "closed", "liquidated", "funding_updates", "bridge_transfers", "trace_id",
    }  # fmt: skip
    assert summary["opened"] == 17  # 16, and the bridged trader's round trip
    assert summary["closed"] == 3
    assert summary["bridge_transfers"] == 2  # a deposit and a withdrawal, each delivered once
    assert summary["liquidated"] >= 1
    assert summary["funding_updates"] >= 2  # one per market
    assert isinstance(summary["trace_id"], str) and len(summary["trace_id"]) == 32
    assert "perpex-keeper" in proc.stdout and "perpex-indexer" in proc.stdout
    assert "/graphql" in proc.stdout  # the GraphQL endpoint is announced
    assert "released on chain 31338" in proc.stdout
    # every service shut down cleanly on SIGTERM
    assert "exited with" not in proc.stderr
