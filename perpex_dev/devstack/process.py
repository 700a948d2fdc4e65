"""Start, identify and stop the stack's child processes by pid file.

A pid file records the pid and the process start time (from /proc), so `stop` never signals a
process that merely reused the pid of one we started.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def proc_start_time(pid: int) -> int | None:
    """Start time of `pid` in clock ticks since boot, or None when it does not exist."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # The command name (field 2) may contain spaces; fields after the last ')' are fixed.
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":  # zombie: already dead
        return None
    return int(fields[19])


@dataclass(frozen=True)
class PidRecord:
    pid: int
    start_time: int
    command: str

    def alive(self) -> bool:
        return proc_start_time(self.pid) == self.start_time


class PidFile:
    def __init__(self, path: Path):
        self.path = path

    def read(self) -> PidRecord | None:
        try:
            data = json.loads(self.path.read_text())
            return PidRecord(int(data["pid"]), int(data["start_time"]), str(data["command"]))
        except (FileNotFoundError, ValueError, KeyError, TypeError):
            return None

    def write(self, proc: subprocess.Popen[bytes], command: str) -> PidRecord:
        start = proc_start_time(proc.pid)
        record = PidRecord(proc.pid, start or 0, command)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.path.write_text(json.dumps(record.__dict__))
        return record

    def clear(self) -> None:
        self.path.unlink(missing_ok=True)


def spawn(
    argv: list[str],
    log_path: Path,
    env: dict[str, str] | None = None,
    user: str | None = None,
    cwd: Path | None = None,
) -> subprocess.Popen[bytes]:
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log = open(log_path, "ab")
    try:
        return subprocess.Popen(
            argv,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=env,
            cwd=cwd,
            start_new_session=True,  # survives the CLI exiting; not killed by the terminal's ^C
            user=user,
        )
    finally:
        log.close()


def terminate(
    record: PidRecord, timeout: float = 10.0, sig: signal.Signals = signal.SIGTERM
) -> bool:
    """`sig` (SIGTERM), then SIGKILL after `timeout`. Returns True if the process is gone."""
    if not record.alive():
        return True
    try:
        os.kill(record.pid, sig)
    except ProcessLookupError:
        return True
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        _reap(record.pid)
        if not record.alive():
            return True
        time.sleep(0.05)
    try:
        os.kill(record.pid, signal.SIGKILL)
    except ProcessLookupError:
        return True
    for _ in range(100):
        _reap(record.pid)
        if not record.alive():
            return True
        time.sleep(0.05)
    return not record.alive()


def _reap(pid: int) -> None:
    try:
        os.waitpid(pid, os.WNOHANG)
    except ChildProcessError:
        pass
