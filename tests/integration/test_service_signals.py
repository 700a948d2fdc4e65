"""A service's graceful stop can hang (a transaction that never confirms, say): a second
SIGTERM/SIGINT exits at once, with 128 + the signal number."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

HUNG_SERVICE = """
import asyncio, logging, sys
from shared.service import configure_logging, service_scope

async def main():
    configure_logging("INFO")
    log = logging.getLogger("hung")
    async with service_scope(log, "finishing (never)", health_port=0) as svc:
        print("ready", flush=True)
        await svc.stop.wait()
        await asyncio.sleep(3600)  # a graceful stop that never ends

asyncio.run(main())
"""


def _wait_for(proc: subprocess.Popen[str], text: str, within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    assert proc.stderr is not None and proc.stdout is not None
    stream = proc.stdout if text == "ready" else proc.stderr
    while time.monotonic() < deadline:
        line = stream.readline()
        if text in line:
            return
    raise AssertionError(f"{text!r} not seen")


def test_a_second_sigterm_exits_at_once() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", HUNG_SERVICE],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        _wait_for(proc, "ready")
        proc.send_signal(signal.SIGTERM)
        _wait_for(proc, "SIGTERM received")
        assert proc.poll() is None  # still finishing
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 128 + signal.SIGTERM.value
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
