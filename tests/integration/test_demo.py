"""`perpex demo --exit`: the whole stack as separate processes, one market played through it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from perpex_dev.devstack.ports import free_port


def test_demo_liquidates_and_funds_and_links_a_trace(tmp_path: Path) -> None:
    # The demo moves the chain's clock 8 h ahead (step 7). The funding updater looks at chain time
    # again after at most FUNDING_MAX_SLEEP_S (60 s by default, for chains whose clock
    # jumps): with the default the test spent most of its time waiting for that look. 5 s keeps
    # what the step shows (the updater notices the jump and updates both markets) without it.
    env = {**os.environ, "FUNDING_MAX_SLEEP_S": "5"}
    proc = subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "demo", "--exit",
         "--data-dir", str(tmp_path / "demo"), "--dashboard-port", str(free_port())],
        capture_output=True, text=True, timeout=600, env=env,
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
