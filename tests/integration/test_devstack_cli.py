"""`perpex dev up | status | down` on its own ports and data folder."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import subprocess
import sys
from pathlib import Path

import asyncpg

from perpex_dev.devstack.ports import free_ports
from perpex_dev.devstack.process import proc_start_time


def _dev(data_dir: Path, ports: list[int], *args: str) -> subprocess.CompletedProcess[str]:
    opts = [
        "--data-dir", str(data_dir),
        "--anvil-port", str(ports[0]),
        "--postgres-port", str(ports[1]),
        "--kafka-port", str(ports[2]),
    ]  # fmt: skip
    return subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "dev", *opts, *args],
        capture_output=True,
        text=True,
        timeout=180,
        env=os.environ.copy(),
    )


def test_up_twice_status_down_leaves_nothing(tmp_path: Path) -> None:
    ports = free_ports(3)
    data_dir = tmp_path / "stack"
    try:
        first = _dev(data_dir, ports, "up")
        assert first.returncode == 0, first.stderr
        status = _dev(data_dir, ports, "status", "--json")
        assert status.returncode == 0, status.stderr
        rows = json.loads(status.stdout)
        assert [r["component"] for r in rows] == ["anvil", "postgres", "kafka"]
        assert all(r["healthy"] for r in rows), rows
        assert rows[0]["url"] == f"http://127.0.0.1:{ports[0]}"
        pids = [r["pid"] for r in rows]

        again = _dev(data_dir, ports, "up")  # idempotent: same processes
        assert again.returncode == 0, again.stderr
        rows2 = json.loads(_dev(data_dir, ports, "status", "--json").stdout)
        assert [r["pid"] for r in rows2] == pids
        # an idle client (a dashboard's pool) must not hold PostgreSQL's shutdown up
        loop = asyncio.new_event_loop()
        idle = loop.run_until_complete(asyncpg.connect(rows[1]["url"]))
    finally:
        down = _dev(data_dir, ports, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    with contextlib.suppress(Exception):
        loop.run_until_complete(idle.close(timeout=1))
    loop.close()
    log = (data_dir / "logs" / "postgres.log").read_text(errors="replace")
    assert "fast shutdown request" in log and "smart shutdown request" not in log
    assert all(proc_start_time(pid) is None for pid in pids)
    after = _dev(data_dir, ports, "status", "--json")
    assert after.returncode == 1
    assert not any(r["healthy"] for r in json.loads(after.stdout))
