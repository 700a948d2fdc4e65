"""The transaction sender against a real anvil: send, nonce recovery, fee-bump replacement."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from web3 import Web3

from perpex_dev.devstack.accounts import anvil_key
from shared.chain.client import async_web3
from shared.chain.errors import InsufficientBalanceError, TxRevertedError
from shared.chain.tx import TxSender

KEY_INDEX = 8


def _rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    resp = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    assert "error" not in resp, resp
    return resp.get("result")


def _sender(rpc_url: str, **kw: Any) -> TxSender:
    return TxSender(async_web3(rpc_url), anvil_key(KEY_INDEX), 31337, poll_s=0.05, **kw)


async def test_send_confirms_and_tracks_nonce(chain: Web3, rpc_url: str) -> None:
    sender = _sender(rpc_url, gas_multiplier=1.5)
    to = chain.eth.accounts[1]
    start_nonce = chain.eth.get_transaction_count(sender.address)
    r1, r2 = await asyncio.gather(
        sender.send({"to": to, "value": 1}, "a"), sender.send({"to": to, "value": 2}, "b")
    )
    assert r1["status"] == 1 and r2["status"] == 1
    assert chain.eth.get_transaction_count(sender.address) == start_nonce + 2
    tx = chain.eth.get_transaction(r1["transactionHash"])
    assert tx["gas"] == 31_500  # 21000 x 1.5
    assert "ac0974" not in repr(sender)


async def test_revert_reason_surfaces_without_sending(chain: Web3, rpc_url: str) -> None:
    sender = _sender(rpc_url)
    nonce = chain.eth.get_transaction_count(sender.address)
    # Calling a non-payable precompile-less address with bad data does not revert, so revert
    # with a contract that always reverts: init code that reverts with Error("nope").
    # deploy: returns runtime `PUSH1 0 PUSH1 0 REVERT`
    runtime = bytes.fromhex("60006000fd")
    init = bytes.fromhex("64") + runtime + bytes.fromhex("6000526005601bf3")
    receipt = chain.eth.wait_for_transaction_receipt(
        chain.eth.send_transaction({"from": chain.eth.accounts[0], "data": "0x" + init.hex()})
    )
    target = receipt["contractAddress"]
    with pytest.raises(TxRevertedError):
        await sender.send({"to": target, "data": "0x12345678"}, "always-reverts")
    assert chain.eth.get_transaction_count(sender.address) == nonce  # nothing sent


async def test_stuck_transaction_is_replaced_with_higher_fee(chain: Web3, rpc_url: str) -> None:
    sender = _sender(rpc_url, replace_after_s=0.3)
    _rpc(chain, "evm_setAutomine", [False])
    try:
        task = asyncio.create_task(sender.send({"to": chain.eth.accounts[2], "value": 7}, "stuck"))
        while not sender.pending:
            await asyncio.sleep(0.05)
        pending = next(iter(sender.pending.values()))
        first_fee = pending.fees.max_fee_per_gas
        # Base fee spikes far above what the first transaction offered.
        _rpc(chain, "anvil_setNextBlockBaseFeePerGas", [hex(first_fee * 4)])
        while len(pending.hashes) < 3:  # replaced at least twice, fees follow the base fee
            await asyncio.sleep(0.05)
        _rpc(chain, "evm_mine", [])
        receipt = await asyncio.wait_for(task, 30)
    finally:
        _rpc(chain, "evm_setAutomine", [True])
    assert receipt["status"] == 1
    mined = chain.eth.get_transaction(receipt["transactionHash"])
    assert mined["maxFeePerGas"] > first_fee * 4
    assert receipt["transactionHash"].to_0x_hex() != pending.hashes[0]
    assert sender.stats.replaced >= 2
    block = chain.eth.get_block(receipt["blockNumber"], full_transactions=True)
    ours = [t for t in block["transactions"] if t["from"] == sender.address]
    assert len(ours) == 1  # one transaction for that nonce


async def test_a_failed_fee_bump_does_not_abandon_the_transaction(
    chain: Web3, rpc_url: str
) -> None:
    """An RPC error while bumping (reading the base fee, say) leaves the transaction pending:
    the sender keeps waiting for it, bumps later, and returns its receipt."""
    sender = _sender(rpc_url, replace_after_s=0.2)
    fees = sender.current_fees
    failures = 0

    async def flaky_fees(fresh: bool = False) -> Any:
        nonlocal failures
        if fresh and failures < 2:
            failures += 1
            raise TimeoutError("node did not answer")
        return await fees(fresh=fresh)

    sender.current_fees = flaky_fees  # type: ignore[method-assign]
    _rpc(chain, "evm_setAutomine", [False])
    try:
        task = asyncio.create_task(sender.send({"to": chain.eth.accounts[2], "value": 9}, "bump"))
        while not sender.pending:
            await asyncio.sleep(0.05)
        pending = next(iter(sender.pending.values()))
        _rpc(chain, "anvil_setNextBlockBaseFeePerGas", [hex(pending.fees.max_fee_per_gas * 4)])
        while len(pending.hashes) < 2 and not task.done():  # bumped after the failures
            await asyncio.sleep(0.05)
        _rpc(chain, "evm_mine", [])
        receipt = await asyncio.wait_for(task, 30)
    finally:
        _rpc(chain, "evm_setAutomine", [True])
    assert failures == 2 and receipt["status"] == 1
    assert receipt["transactionHash"].to_0x_hex() == pending.hashes[-1]


async def test_a_broadcast_whose_answer_is_lost_is_tracked_not_sent_again(
    chain: Web3, rpc_url: str
) -> None:
    """The node took the transaction but its answer was lost (a read timeout): the sender
    tracks what it signed instead of sending a second transaction at the next nonce."""
    sender = _sender(rpc_url)
    real = sender.w3.eth.send_raw_transaction
    signed: list[bytes] = []

    async def answer_lost(raw: Any) -> Any:
        await real(raw)
        signed.append(bytes(raw))
        if len(signed) == 1:
            raise TimeoutError("read timed out")
        return Web3.keccak(raw)

    sender.w3.eth.send_raw_transaction = answer_lost  # type: ignore[method-assign]
    start = chain.eth.get_transaction_count(sender.address)
    receipt = await sender.send({"to": chain.eth.accounts[3], "value": 5}, "answer-lost")
    assert receipt["status"] == 1 and len(signed) == 1
    assert chain.eth.get_transaction_count(sender.address) == start + 1  # sent once
    after = await sender.send({"to": chain.eth.accounts[3], "value": 6}, "next")
    assert after["status"] == 1
    assert chain.eth.get_transaction_count(sender.address) == start + 2


async def test_recovers_nonce_after_external_use(chain: Web3, rpc_url: str) -> None:
    sender = _sender(rpc_url)
    await sender.send({"to": chain.eth.accounts[1], "value": 1}, "first")
    # Another process uses the same wallet: our local nonce is now stale.
    other = _sender(rpc_url)
    await other.send({"to": chain.eth.accounts[1], "value": 1}, "other")
    receipt = await sender.send({"to": chain.eth.accounts[1], "value": 1}, "after")
    assert receipt["status"] == 1


async def test_insufficient_balance_refuses_to_send(chain: Web3, rpc_url: str) -> None:
    sender = _sender(rpc_url, min_balance_wei=10**30)
    warned: list[int] = []
    sender.on_low_balance = warned.append
    _rpc(chain, "anvil_setBalance", [sender.address, hex(10**9)])
    with pytest.raises(InsufficientBalanceError):
        await sender.send({"to": chain.eth.accounts[1], "value": 1}, "poor")
    assert warned == [10**9]
