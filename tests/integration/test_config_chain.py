"""CHAIN_ID is checked against a real node."""

from __future__ import annotations

import os
import subprocess
import sys

KEY = "0x" + "5a" * 32


def test_chain_id_mismatch_against_real_anvil(rpc_url: str) -> None:
    env = {**os.environ, "RPC_URL": rpc_url, "CHAIN_ID": "1", "PRIVATE_KEY": KEY}
    proc = subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert proc.returncode == 2, proc.stderr
    assert "CHAIN_ID: is 1 but the node at RPC_URL reports 31337" in proc.stderr
    assert "5a5a" not in proc.stderr + proc.stdout


def test_matching_chain_id_prints_masked_config(rpc_url: str) -> None:
    env = {**os.environ, "RPC_URL": rpc_url, "CHAIN_ID": "31337", "PRIVATE_KEY": KEY}
    proc = subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "config"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        cwd="/",
    )
    assert proc.returncode == 0, proc.stderr
    assert '"private_key": "***"' in proc.stdout
    assert "5a5a" not in proc.stdout
