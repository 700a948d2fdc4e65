"""A throwaway anvil (from node_modules) on a free 127.0.0.1 port, for tests and benchmarks."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from shared.chain.abi import REPO_ROOT

ANVIL_BIN = REPO_ROOT / "node_modules" / "@foundry-rs" / "anvil-linux-amd64" / "bin" / "anvil"

# anvil's well-known development keys (mnemonic "test test ... junk"); local chains only.
DEV_KEYS = (
    "0xac0974bec39a17e36ba4a6b4d238ff944bacb478cbed5efcae784d7bf4f2ff80",
    "0x59c6995e998f97a5a0044966f0945389dc9e86dae88c7a8412f4603b6b78690d",
    "0x5de4111afa1a4b94908f83103eb1f1706367c2e68ca870fc3fb9a804cdab365a",
    "0x7c852118294e51e653712a81e05800f419141751be58f605c371e15141b007a6",
    "0x47e179ec197488593b187f80a00eb0da91f1b9d0b13f8733639f19c30a34926a",
)


@dataclass(frozen=True)
class AnvilProcess:
    url: str
    port: int
    pid: int


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _ready(url: str) -> bool:
    body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=1.0) as resp:
            return "result" in json.loads(resp.read())
    except OSError:
        return False


@contextlib.contextmanager
def run_anvil(extra_args: list[str] | None = None, timeout: float = 30.0) -> Iterator[AnvilProcess]:
    """Start anvil, wait until it answers eth_chainId, yield it, stop it."""
    if not Path(ANVIL_BIN).exists():
        raise FileNotFoundError(f"anvil not found at {ANVIL_BIN}; run scripts/bootstrap.sh")
    for _attempt in range(3):
        port = _free_port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [
                str(ANVIL_BIN),
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--silent",
                *(extra_args or []),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and proc.poll() is None and not _ready(url):
            time.sleep(0.05)
        if proc.poll() is None and _ready(url):
            break
        proc.kill()
        proc.wait()
    else:
        raise RuntimeError("anvil did not start")
    try:
        yield AnvilProcess(url=url, port=port, pid=proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
