"""The sender's nonce ledger against a real anvil behind the fault proxy: a broadcast lost on
the way is sent again with the same bytes; receipt polling rides out every transient fault;
a queue left behind a nonce gap (pending == latest) is found and cancelled at start; a gap
that cannot be filled blocks new work and reports the sender stuck until it is filled."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest
from eth_account import Account
from web3 import Web3
from web3.exceptions import TransactionNotFound

from perpex_dev.devstack.accounts import anvil_key
from perpex_dev.devstack.fault_proxy import FaultProxy
from shared.chain.client import async_web3
from shared.chain.tx import NonceGapError, TxSender

KEY_INDEX = 6


def _rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    resp = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    assert "error" not in resp, resp
    return resp.get("result")


@pytest.fixture
async def proxy(rpc_url: str) -> AsyncIterator[FaultProxy]:
    async with FaultProxy(rpc_url) as p:
        yield p


def _sender(url: str, **kw: Any) -> TxSender:
    kw.setdefault("backoff_initial_s", 0.01)
    kw.setdefault("backoff_max_s", 0.1)
    return TxSender(async_web3(url, timeout=0.5), anvil_key(KEY_INDEX), 31337, poll_s=0.05, **kw)


def _raw(nonce: int, to: str, fee: int = 10**10) -> str:
    tx = {
        "to": to,
        "value": 1,
        "gas": 21_000,
        "maxFeePerGas": fee,
        "maxPriorityFeePerGas": 10**9,
        "nonce": nonce,
        "chainId": 31337,
        "type": 2,
    }
    key = anvil_key(KEY_INDEX).get_secret_value()
    return "0x" + Account.sign_transaction(tx, key).raw_transaction.hex()


@pytest.mark.parametrize("fault", ["drop_before", "5xx", "429", "drop_after", "truncate"])
async def test_a_lost_broadcast_is_sent_again_with_the_same_bytes(
    chain: Web3, proxy: FaultProxy, fault: str
) -> None:
    sender = _sender(proxy.url)
    start = chain.eth.get_transaction_count(sender.address)
    proxy.inject("eth_sendRawTransaction", fault)
    receipt = await asyncio.wait_for(
        sender.send({"to": chain.eth.accounts[3], "value": 5}, fault), 30
    )
    assert receipt["status"] == 1
    assert chain.eth.get_transaction_count(sender.address) == start + 1  # one nonce, once
    assert sender.stats.sent == 1  # signed once: the same bytes went out again at most
    if fault in ("drop_before", "5xx", "429"):
        assert sender.stats.rebroadcast == 1  # the node never had it
    else:
        assert sender.stats.rebroadcast == 0  # the node had it: asking was enough
    after = await sender.send({"to": chain.eth.accounts[3], "value": 6}, "next")
    assert after["status"] == 1
    assert chain.eth.get_transaction_count(sender.address) == start + 2  # no gap


async def test_receipt_polling_rides_out_every_transient_fault(
    chain: Web3, proxy: FaultProxy
) -> None:
    sender = _sender(proxy.url)
    _rpc(chain, "evm_setAutomine", [False])
    try:
        pending = await sender.submit({"to": chain.eth.accounts[2], "value": 3}, "faults")
        faults = ("429", "5xx", "drop_before", "drop_after", "truncate", "timeout")
        proxy.delay = 0.8  # past the client's 0.5 s timeout
        proxy.inject("eth_getTransactionCount", *faults)
        proxy.inject("eth_getTransactionReceipt", *faults)
        waiter = asyncio.create_task(sender.finish(pending))
        await asyncio.sleep(0.5)
        _rpc(chain, "evm_mine", [])
        receipt = await asyncio.wait_for(waiter, 60)
    finally:
        _rpc(chain, "evm_setAutomine", [True])
    assert receipt["status"] == 1
    assert not proxy.scripted["eth_getTransactionReceipt"]  # every fault was met
    assert not sender.pending


async def test_a_gapped_queue_left_by_a_previous_run_is_cancelled_at_start(
    chain: Web3, proxy: FaultProxy
) -> None:
    """pending == latest while three transactions sit queued behind a gap: invisible to a
    pending > latest check. The sender finds them in the txpool, replaces each with a
    cancellation and fills the gap, so none of the stale ones is ever mined."""
    address = Web3.to_checksum_address(
        Account.from_key(anvil_key(KEY_INDEX).get_secret_value()).address
    )
    latest = chain.eth.get_transaction_count(address)
    stale = [
        _rpc(chain, "eth_sendRawTransaction", [_raw(latest + k, chain.eth.accounts[4])])
        for k in (1, 2, 3)
    ]
    assert chain.eth.get_transaction_count(address, "pending") == latest  # the gap hides them
    start_block = chain.eth.block_number
    sender = _sender(proxy.url)
    result = await sender.reconcile(wait_s=1.0)
    assert (result.waited, result.cancelled) == (0, 4)
    assert await sender.wait_pending(30)
    assert chain.eth.get_transaction_count(address) == latest + 4
    assert chain.eth.get_transaction_count(address, "pending") == latest + 4
    for tx_hash in stale:  # replaced in the pool: never mined
        with pytest.raises(TransactionNotFound):
            chain.eth.get_transaction_receipt(tx_hash)
    mined = [
        tx
        for n in range(start_block + 1, chain.eth.block_number + 1)
        for tx in chain.eth.get_block(n, full_transactions=True)["transactions"]
        if tx["from"] == address
    ]
    assert sorted(t["nonce"] for t in mined) == list(range(latest, latest + 4))
    assert all(t["to"] == address and t["value"] == 0 for t in mined)  # cancellations only
    receipt = await sender.send({"to": chain.eth.accounts[4], "value": 2}, "new work")
    assert chain.eth.get_transaction(receipt["transactionHash"])["nonce"] == latest + 4


async def test_a_gap_that_cannot_be_filled_blocks_new_work_until_it_is(
    chain: Web3, proxy: FaultProxy
) -> None:
    address = Web3.to_checksum_address(
        Account.from_key(anvil_key(KEY_INDEX).get_secret_value()).address
    )
    latest = chain.eth.get_transaction_count(address)
    stale = _rpc(chain, "eth_sendRawTransaction", [_raw(latest + 1, chain.eth.accounts[4])])
    balance = chain.eth.get_balance(address)
    _rpc(chain, "anvil_setBalance", [address, hex(0)])
    try:
        sender = _sender(proxy.url)
        await sender.reconcile(wait_s=0.5)
        await asyncio.sleep(0.3)
        reason = sender.stuck()
        assert reason is not None and reason.startswith(f"nonce gap at {latest} cannot be filled")
        with pytest.raises(NonceGapError):
            await sender.submit({"to": chain.eth.accounts[4], "value": 1}, "behind the gap")
        assert chain.eth.get_transaction_count(address, "pending") == latest  # nothing queued
    finally:
        _rpc(chain, "anvil_setBalance", [address, hex(balance)])
    # gas money again: the ledger fills the gap by itself and new work goes through
    assert await sender.wait_pending(30)
    assert sender.stuck() is None
    with pytest.raises(TransactionNotFound):  # replaced by its cancellation, never mined
        chain.eth.get_transaction_receipt(stale)
    receipt = await sender.send({"to": chain.eth.accounts[4], "value": 1}, "after")
    assert chain.eth.get_transaction(receipt["transactionHash"])["nonce"] == latest + 2
