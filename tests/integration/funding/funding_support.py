"""Helpers for the funding updater's integration tests: chain-time travel with evm_increaseTime
+ evm_mine, FundingRateUpdated logs read back from the chain, settings, updaters run in-process,
and kmock's Kubernetes API emulator made strict about resourceVersion."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import attrs
import kmock as km
from web3 import Web3

from perpex_dev.devstack.accounts import FUNDING, anvil_key
from services.funding.app import open_updater
from services.funding.settings import FundingSettings, load_funding_settings
from services.funding.updater import FundingUpdater
from shared.chain.abi import load_abi
from shared.chain.deployment import Deployment

H8 = 8 * 3600
LEASES = "coordination.k8s.io/v1/leases"


class Chain:
    def __init__(self, w3: Web3, deployment: Deployment):
        self.w3 = w3
        self.deployment = deployment
        self.pm = w3.eth.contract(
            address=deployment.contracts.position_manager, abi=load_abi("PositionManager")
        )
        self.start_block = w3.eth.block_number
        self.funding_address = w3.eth.account.from_key(
            anvil_key(FUNDING).get_secret_value()
        ).address

    def rpc(self, method: str, params: list[Any]) -> Any:
        resp = self.w3.provider.make_request(method, params)  # type: ignore[arg-type]
        assert "error" not in resp, resp
        return resp.get("result")

    def mid(self, pair: str) -> bytes:
        return self.deployment.markets[pair].market_id_bytes

    @property
    def pairs(self) -> list[str]:
        return self.deployment.pairs

    def now(self) -> int:
        return int(self.w3.eth.get_block("latest")["timestamp"])

    def last(self, pair: str) -> int:
        return int(self.pm.functions.lastFundingTime(self.mid(pair)).call())

    def next_time(self, pair: str) -> int:
        return int(self.pm.functions.nextFundingTime(self.mid(pair)).call())

    def advance_to(self, timestamp: int) -> None:
        """Move chain time forward to `timestamp` (evm_increaseTime) and mine a block there."""
        delta = timestamp - self.now()
        if delta > 0:
            self.rpc("evm_increaseTime", [delta])
        self.rpc("evm_mine", [])

    def advance(self, seconds: int) -> None:
        self.advance_to(self.now() + seconds)

    def open_next_window(self, extra: int = 1) -> None:
        """Open the next window of every market (the later one decides)."""
        self.advance_to(max(self.next_time(p) for p in self.pairs) + extra)

    def funding_logs(self) -> list[dict[str, Any]]:
        """FundingRateUpdated logs since the test started: market pair, timestamp, tx."""
        event = self.pm.events.FundingRateUpdated()
        out = []
        for entry in event.get_logs(from_block=self.start_block, to_block="latest"):
            pair = self.deployment.pair_of(bytes(entry["args"]["marketId"]))
            out.append(
                {
                    "pair": pair,
                    "timestamp": int(entry["args"]["timestamp"]),
                    "tx": entry["transactionHash"].to_0x_hex(),
                    "block": entry["blockNumber"],
                }
            )
        return out

    def updates(self, pair: str) -> list[dict[str, Any]]:
        return [e for e in self.funding_logs() if e["pair"] == pair]

    def wallet_nonce(self) -> int:
        return int(self.w3.eth.get_transaction_count(self.funding_address))

    def wallet_receipts_ok(self, since_block: int | None = None) -> list[int]:
        """Statuses of every transaction the funding wallet sent since the test started."""
        statuses = []
        for n in range((since_block or self.start_block) + 1, self.w3.eth.block_number + 1):
            block = self.w3.eth.get_block(n, full_transactions=True)
            for tx in block["transactions"]:
                if tx["from"] == self.funding_address:  # type: ignore[index]
                    receipt = self.w3.eth.get_transaction_receipt(tx["hash"])  # type: ignore[index]
                    statuses.append(int(receipt["status"]))
        return statuses

    def send_as(self, key_index: int, contract: Any, fn: str, *args: Any) -> Any:
        account = self.w3.eth.account.from_key(anvil_key(key_index).get_secret_value())
        tx = getattr(contract.functions, fn)(*args).build_transaction(
            {"from": account.address, "nonce": self.w3.eth.get_transaction_count(account.address)}
        )
        signed = account.sign_transaction(tx)
        receipt = self.w3.eth.wait_for_transaction_receipt(
            self.w3.eth.send_raw_transaction(signed.raw_transaction)
        )
        assert receipt["status"] == 1, receipt
        return receipt


def funding_settings(rpc_url: str, deployment_file: Path, **over: Any) -> FundingSettings:
    values: dict[str, Any] = {
        "rpc_url": rpc_url,
        "chain_id": 31337,
        "funding_private_key": anvil_key(FUNDING).get_secret_value(),
        "private_key": None,
        "deployment_file": deployment_file,
        "position_manager_address": None,
        "markets": "",
        "leader_election": "none",
        "leader_retry_s": 0.3,
        "funding_grace_s": 0,
        "funding_max_sleep_s": 0.3,
        "poll_interval_ms": 100,
        "funding_revert_backoff_s": 2.0,
        "funding_min_balance_eth": "0.05",
        "funding_interval_s": H8,
        "kafka_listen": False,
        "max_retries": 3,
        "shutdown_timeout_s": 10,
        "funding_replace_after_s": 5,
        "funding_confirm_timeout_s": 30,
    }
    values.update(over)
    return load_funding_settings(**values)


@contextlib.asynccontextmanager
async def running(settings: FundingSettings) -> AsyncIterator[FundingUpdater]:
    """An updater running in this event loop; stopped (gracefully) on exit."""
    async with open_updater(settings) as updater:
        stop = asyncio.Event()
        task = asyncio.create_task(updater.run(stop))
        try:
            yield updater
        finally:
            stop.set()
            await asyncio.wait_for(task, 30)


async def wait_for(
    predicate: Callable[[], Any], what: str, within: float = 20.0, poll: float = 0.05
) -> Any:
    """Poll until `predicate()` is truthy (generous: 2 busy cores)."""
    deadline = time.monotonic() + within
    while True:
        value = predicate()
        if isinstance(value, Awaitable):
            value = await value
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(poll)


# ---------------------------------------------------------------- kmock as an API server


@attrs.define(kw_only=True)
class StrictLeaseEmulator(km.KubernetesEmulator):
    """kmock's emulator plus what leader election relies on from a real API server: every write
    gets a new resourceVersion, and a patch carrying a stale metadata.resourceVersion is
    refused with 409 Conflict (optimistic concurrency)."""

    _versions: Any = attrs.field(factory=lambda: itertools.count(1), init=False)

    async def _handle(self, request: Any) -> Any:
        if request.resource is not None and request.action is not None:
            self._stamp(request)
        return await super()._handle(request)

    def _stamp(self, request: Any) -> None:
        data = request.data
        if not isinstance(data, dict):
            return
        version = str(next(self._versions))
        if request.action == km.action.CREATE:
            data.setdefault("metadata", {})["resourceVersion"] = version
        elif request.action == km.action.UPDATE and request.name is not None:
            try:
                obj = self.objects[request.resource, request.namespace, request.name]
                current = (
                    None if obj.deleted else (obj.get("metadata") or {}).get("resourceVersion")
                )
            except KeyError:
                current = None
            wanted = (data.get("metadata") or {}).get("resourceVersion")
            if wanted is not None and current is not None and wanted != current:
                raise km.KubernetesError(
                    status=409, reason="Conflict", message="the object has been modified"
                )
            data.setdefault("metadata", {})
            data["metadata"] = {**(data["metadata"] or {}), "resourceVersion": version}


def lease_object(kube: km.KubernetesEmulator, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        obj = kube.objects[LEASES, namespace, name]
    except KeyError:
        return None
    if obj.deleted:
        return None
    return copy.deepcopy(_plain(obj.raw))


def _plain(value: Any) -> Any:
    if isinstance(value, dict) or hasattr(value, "items"):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value
