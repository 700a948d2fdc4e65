"""`perpex trade` as a real process: exit codes, one line on stderr without a traceback, and no
secret (key, the RPC URL's path) in anything it prints."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from trade_support import CLEARED, Trading

from perpex_dev.devstack.accounts import ANVIL_KEYS


def _perpex(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if k not in CLEARED}
    return subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "trade", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _dead_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_exit_codes_and_no_secrets(trading: Trading) -> None:
    key = ANVIL_KEYS[5]
    secret_url = f"http://127.0.0.1:{_dead_port()}/v3/SECRETAPIKEY42"
    down = _perpex(
        ["positions", "--json"],
        {"RPC_URL": secret_url, "DEPLOYMENT_FILE": str(trading.deployment_path),
         "TRADER_PRIVATE_KEY": key},
    )  # fmt: skip
    assert down.returncode == 1, down.stderr
    assert json.loads(down.stdout)["error"]["kind"] == "failure"
    assert down.stderr.startswith("error: cannot reach the RPC endpoint")
    assert len(down.stderr.strip().splitlines()) == 1

    typo = _perpex(
        ["faucet", "10", "--yes"],
        {"RPC_URL": trading.rpc_url, "DEPLOYMENT_FILE": str(trading.deployment_path),
         "TRADER_PRIVATE_KEY": key[:-2] + "zz"},
    )  # fmt: skip
    assert typo.returncode == 2 and "TRADER_PRIVATE_KEY must be 32 bytes of hex" in typo.stderr

    for proc in (down, typo):
        text = proc.stdout + proc.stderr
        assert "Traceback" not in text
        assert key[2:] not in text and key[2:-2] not in text
        assert "SECRETAPIKEY42" not in text
