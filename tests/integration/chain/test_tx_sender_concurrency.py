"""The transaction sender under concurrent use (as the keeper uses it), against a real anvil:
contiguous nonces, no gap after a failed broadcast, pending costs reserved against the balance,
confirmation driven by the account's mined nonce."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from web3 import Web3
from web3.exceptions import Web3RPCError

from perpex_dev.devstack.accounts import anvil_key
from shared.chain.client import async_web3
from shared.chain.errors import InsufficientBalanceError
from shared.chain.tx import TxSender

KEY_INDEX = 7


def _rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    resp = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    assert "error" not in resp, resp
    return resp.get("result")


def _sender(rpc_url: str, **kw: Any) -> TxSender:
    return TxSender(async_web3(rpc_url), anvil_key(KEY_INDEX), 31337, poll_s=0.05, **kw)


async def test_concurrent_sends_use_contiguous_nonces(chain: Web3, rpc_url: str) -> None:
    sender = _sender(rpc_url, fee_cache_s=5.0, balance_cache_s=5.0)
    start = chain.eth.get_transaction_count(sender.address)
    to = chain.eth.accounts[1]
    receipts = await asyncio.gather(
        *(sender.send({"to": to, "value": i + 1}, f"c{i}") for i in range(25))
    )
    assert all(r["status"] == 1 for r in receipts)
    nonces = sorted(chain.eth.get_transaction(r["transactionHash"])["nonce"] for r in receipts)
    assert nonces == list(range(start, start + 25))
    assert sender.stats.sent == 25 and sender.stats.replaced == 0
    assert not sender.pending


async def test_failed_broadcast_leaves_no_gap(chain: Web3, rpc_url: str) -> None:
    sender = _sender(rpc_url, backoff_initial_s=0.01, backoff_max_s=0.05)
    start = chain.eth.get_transaction_count(sender.address)
    real = sender.w3.eth.send_raw_transaction
    failures = {"left": 2}

    async def flaky(raw: Any) -> Any:
        if failures["left"] > 0:
            failures["left"] -= 1
            raise Web3RPCError("503 Service Temporarily Unavailable")
        return await real(raw)

    sender.w3.eth.send_raw_transaction = flaky  # type: ignore[method-assign]
    to = chain.eth.accounts[1]
    receipts = await asyncio.gather(
        *(sender.send({"to": to, "value": 1}, f"f{i}") for i in range(6))
    )
    assert failures["left"] == 0
    nonces = sorted(chain.eth.get_transaction(r["transactionHash"])["nonce"] for r in receipts)
    assert nonces == list(range(start, start + 6))  # retried, and nothing skipped or reused
    assert chain.eth.get_transaction_count(sender.address) == start + 6


async def test_pending_costs_are_reserved(chain: Web3, rpc_url: str) -> None:
    sender = _sender(rpc_url)
    _, fees = await sender.current_fees()
    one = 21_000 * 12 // 10 * fees.max_fee_per_gas  # gas x 1.2 at the max fee
    _rpc(chain, "anvil_setBalance", [sender.address, hex(one + one // 2)])
    _rpc(chain, "evm_setAutomine", [False])
    try:
        first = await sender.submit({"to": chain.eth.accounts[1]}, "first")
        assert sender.reserved_wei() == one
        with pytest.raises(InsufficientBalanceError, match="reserved"):
            await sender.submit({"to": chain.eth.accounts[1]}, "second")
        _rpc(chain, "evm_mine", [])
        receipt = await asyncio.wait_for(sender.finish(first), 10)
    finally:
        _rpc(chain, "evm_setAutomine", [True])
    assert receipt["status"] == 1
    assert sender.reserved_wei() == 0


async def test_confirmation_reads_the_nonce_once_per_poll(chain: Web3, rpc_url: str) -> None:
    sender = _sender(rpc_url)
    calls: dict[str, int] = {"count": 0, "receipt": 0}
    real_count = sender.w3.eth.get_transaction_count
    real_receipt = sender.w3.eth.get_transaction_receipt

    async def count(*args: Any) -> Any:
        calls["count"] += 1
        return await real_count(*args)

    async def receipt(*args: Any) -> Any:
        calls["receipt"] += 1
        return await real_receipt(*args)

    sender.w3.eth.get_transaction_count = count  # type: ignore[method-assign]
    sender.w3.eth.get_transaction_receipt = receipt  # type: ignore[method-assign]
    _rpc(chain, "evm_setAutomine", [False])
    try:
        pending = [await sender.submit({"to": chain.eth.accounts[1]}, f"p{i}") for i in range(20)]
        calls.update(count=0, receipt=0)
        waits = [asyncio.create_task(sender.finish(p)) for p in pending]
        await asyncio.sleep(0.5)  # ~10 polls while nothing is mined
        assert calls["receipt"] == 0
        assert calls["count"] <= 15  # one read per poll for all 20, not 20 per poll
        _rpc(chain, "evm_mine", [])
        receipts = await asyncio.wait_for(asyncio.gather(*waits), 10)
    finally:
        _rpc(chain, "evm_setAutomine", [True])
    assert all(r["status"] == 1 for r in receipts)
    assert calls["receipt"] == 20
