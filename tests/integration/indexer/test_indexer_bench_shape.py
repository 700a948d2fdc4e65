"""`perpex bench indexer` on a tiny chain: its last stdout line is the JSON the issue asks for."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys

from indexer_support import REPO


async def test_bench_prints_json_last_line() -> None:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "perpex_cli.main",
        "bench",
        "indexer",
        "--events",
        "300",
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 240)
    assert proc.returncode == 0, err.decode()[-3000:]
    result = json.loads(out.decode().strip().splitlines()[-1])
    assert set(result) == {
        "events",
        "raw_events_per_s",
        "indexer_events_per_s",
        "ratio",
        "peak_rss_mb",
    }
    assert result["events"] >= 300
    assert result["raw_events_per_s"] > 0 and result["indexer_events_per_s"] > 0
    assert result["ratio"] == round(
        result["indexer_events_per_s"] / result["raw_events_per_s"], 3
    ) or (abs(result["ratio"] - result["indexer_events_per_s"] / result["raw_events_per_s"]) < 0.01)
    assert result["peak_rss_mb"] > 0
    assert b"ranges equal the raw pass's" in err
