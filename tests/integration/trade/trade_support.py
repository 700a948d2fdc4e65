"""Helpers for `perpex trade`'s integration tests: the CLI run in-process (click's CliRunner,
with an environment of its own), a deployment driven from web3 (funding wallets, moving the
oracle, chain time), and nonce checks that prove nothing was sent."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result
from web3 import Web3

from perpex_cli.main import cli
from perpex_dev.devstack.accounts import ANVIL_KEYS
from perpex_dev.devstack.market import WAD, LocalMarket
from shared.chain.deployment import Deployment

# Variables the CLI reads; every run starts without them unless a test sets them.
CLEARED = (
    "RPC_URL",
    "DEPLOYMENT_FILE",
    "POSITION_MANAGER_ADDRESS",
    "CHAIN_ID",
    "PRIVATE_KEY",
    "TRADER_PRIVATE_KEY",
    "PERPEX_KEYSTORE",
    "KEYSTORE_PASSWORD",
)


@dataclass
class Run:
    code: int
    stdout: str
    stderr: str

    def json(self) -> dict[str, Any]:
        lines = [ln for ln in self.stdout.splitlines() if ln.strip()]
        assert len(lines) == 1, f"want one JSON line on stdout, got: {self.stdout!r}"
        data: dict[str, Any] = json.loads(lines[0])
        return data


class Trading:
    def __init__(self, w3: Web3, rpc_url: str, deployment_path: Path):
        self.w3 = w3
        self.rpc_url = rpc_url
        self.deployment_path = deployment_path
        self.deployment = Deployment.load(deployment_path)
        self.market = LocalMarket(w3, self.deployment)

    # ---- the CLI ----
    def env(self, key_index: int | None = None, **extra: str | None) -> dict[str, str | None]:
        env: dict[str, str | None] = dict.fromkeys(CLEARED)
        env["RPC_URL"] = self.rpc_url
        env["DEPLOYMENT_FILE"] = str(self.deployment_path)
        if key_index is not None:
            env["TRADER_PRIVATE_KEY"] = ANVIL_KEYS[key_index]
        env.update(extra)
        return env

    def run(
        self,
        *args: str,
        key: int | None = None,
        input: str | None = None,
        env: dict[str, str | None] | None = None,
    ) -> Run:
        result: Result = CliRunner().invoke(
            cli,
            ["trade", *args],
            env={**self.env(key), **(env or {})},
            input=input,
            catch_exceptions=False,
        )
        return Run(result.exit_code, result.stdout, result.stderr)

    def ok(self, *args: str, key: int | None = None, **kw: Any) -> dict[str, Any]:
        """Run with --json; assert exit 0 and return the parsed object."""
        run = self.run(*args, "--json", key=key, **kw)
        assert run.code == 0, (run.stdout, run.stderr)
        data = run.json()
        assert data["ok"] is True
        return data

    # ---- the chain ----
    def address(self, key_index: int) -> str:
        return str(self.w3.eth.account.from_key(ANVIL_KEYS[key_index]).address)

    def nonce(self, key_index: int) -> int:
        return int(self.w3.eth.get_transaction_count(self.address(key_index)))

    def fund(self, key_index: int, amount: int = 50_000) -> None:
        self.market.fund(self.address(key_index), amount * WAD)

    def open(self, key_index: int, pair: str, is_long: bool, collateral: int, lev: int) -> int:
        pos = self.market.open(self.address(key_index), pair, is_long, collateral * WAD, lev * WAD)
        return pos.token_id

    def mid(self, pair: str) -> bytes:
        return self.deployment.market(pair).market_id_bytes

    def advance(self, seconds: int) -> None:
        self.market.advance_time(seconds)

    def set_index(self, pair: str, price_wad: int) -> None:
        """Post an oracle answer (8 decimals) at `price_wad` rounded down to the feed's unit."""
        self.market.set_price(pair, price_wad // 10**10)
