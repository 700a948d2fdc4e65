from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from shared.chain.errors import ErrorDecoder, ErrorKind, classify_message
from shared.chain.fees import GWEI, FeeCapExceeded, FeePolicy, Fees, gas_limit, max_cost_wei


def test_initial_fees_cover_base_fee_growth() -> None:
    fees = FeePolicy().initial(base_fee=10 * GWEI, suggested_priority=2 * GWEI)
    assert fees == Fees(22 * GWEI, 2 * GWEI)


def test_priority_floor_applies() -> None:
    fees = FeePolicy().initial(base_fee=0, suggested_priority=0)
    assert fees.max_priority_fee_per_gas == GWEI // 10
    assert fees.max_fee_per_gas >= fees.max_priority_fee_per_gas


@pytest.mark.parametrize("fee", [0, 1, 7, GWEI, 123_456_789_012])
def test_bump_is_a_valid_replacement(fee: int) -> None:
    policy = FeePolicy()
    prev = Fees(fee * 2 + 1, fee)
    new = policy.bump(prev, base_fee=0)
    assert FeePolicy.is_valid_replacement(prev, new)


def test_bump_follows_spiked_base_fee() -> None:
    prev = Fees(3 * GWEI, GWEI)
    new = FeePolicy().bump(prev, base_fee=100 * GWEI)
    assert new.max_fee_per_gas >= 200 * GWEI + new.max_priority_fee_per_gas


def test_bump_refuses_past_cap() -> None:
    with pytest.raises(FeeCapExceeded):
        FeePolicy(max_fee_cap=10 * GWEI).bump(Fees(9 * GWEI, GWEI), base_fee=0)


def test_small_bump_is_not_a_valid_replacement() -> None:
    assert not FeePolicy.is_valid_replacement(Fees(100, 10), Fees(105, 11))


def test_gas_limit_multiplies_and_rounds_up() -> None:
    assert gas_limit(100_000, 1.2) == 120_000
    assert gas_limit(100_001, 1.5) == 150_002
    with pytest.raises(ValueError):
        gas_limit(1, 0.9)
    assert max_cost_wei(21_000, Fees(10, 1), value=5) == 210_005


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        ("nonce too low: next nonce 5, tx nonce 4", ErrorKind.NONCE),
        ("replacement transaction underpriced", ErrorKind.UNDERPRICED),
        ("max fee per gas less than block base fee", ErrorKind.UNDERPRICED),
        ("already known", ErrorKind.ALREADY_KNOWN),
        ("insufficient funds for gas * price + value", ErrorKind.INSUFFICIENT_FUNDS),
        ("execution reverted: NotLiquidatable", ErrorKind.REVERT),
        ("429 Too Many Requests", ErrorKind.TRANSIENT),
        ("Connection reset by peer", ErrorKind.TRANSIENT),
        ("method not found", ErrorKind.FATAL),
    ],
)
def test_classify(message: str, kind: ErrorKind) -> None:
    assert classify_message(message) == kind


def test_decode_custom_error_string_and_panic() -> None:
    abi = [
        {
            "type": "error",
            "name": "FundingTooEarly",
            "inputs": [{"name": "next", "type": "uint256"}],
        }
    ]
    dec = ErrorDecoder([abi])
    data = function_signature_to_4byte_selector("FundingTooEarly(uint256)") + encode(
        ["uint256"], [42]
    )
    assert dec.decode("0x" + data.hex()) == "FundingTooEarly(42)"
    err = bytes.fromhex("08c379a0") + encode(["string"], ["boom"])
    assert dec.decode(err) == "boom"
    panic = bytes.fromhex("4e487b71") + encode(["uint256"], [0x11])
    assert dec.decode(panic) == "Panic(0x11)"
    assert dec.decode("0xdeadbeef").startswith("unknown error 0xdeadbeef")
    assert dec.decode("0x") == "reverted without a reason"
