"""Keeping among competitors (pure): what a simulation's revert means, which mined reverts are
lost races, and each keeper's own dispatch order."""

from __future__ import annotations

import pytest
from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from services.keeper.races import (
    GONE,
    MINED_LOST_RACE,
    MINED_REVERTED,
    NOT_LIQUIDATABLE,
    OTHER,
    OUT_OF_BOUNDS,
    RevertAction,
    classify_mined_revert,
    classify_revert,
    dispatch_key,
    dispatch_order,
)
from shared.chain.abi import load_abi
from shared.chain.errors import DecodedError, ErrorDecoder

ME = "0x" + "aa" * 20
OTHER_KEEPER = "0x" + "bb" * 20


def _revert_data(signature: str, types: list[str], args: list[object]) -> str:
    return "0x" + (function_signature_to_4byte_selector(signature) + encode(types, args)).hex()


@pytest.mark.parametrize(
    ("signature", "types", "args", "expected"),
    [
        ("PositionNotFound(uint256)", ["uint256"], [7], GONE),
        (
            "NotLiquidatable(uint256,int256,uint256)",
            ["uint256", "int256", "uint256"],
            [7, 9, 8],
            NOT_LIQUIDATABLE,
        ),
        (
            "LiquidationOutOfBounds(uint256,uint256,uint256)",
            ["uint256", "uint256", "uint256"],
            [7, 1980 * 10**18, 1990 * 10**18],
            OUT_OF_BOUNDS,
        ),
        ("InsufficientMargin(int256,uint256)", ["int256", "uint256"], [-1, 2], OTHER),
    ],
)
def test_the_contracts_errors_decoded_from_revert_data(
    signature: str, types: list[str], args: list[object], expected: object
) -> None:
    decoder = ErrorDecoder([load_abi("PositionManager")])
    decoded = decoder.decode_error(_revert_data(signature, types, args))
    assert decoded is not None and decoded.name == signature.split("(")[0]
    assert classify_revert(decoded) is expected


def test_what_each_class_does() -> None:
    assert (GONE.action, GONE.lost_race) == (RevertAction.DROP, True)
    assert (NOT_LIQUIDATABLE.action, NOT_LIQUIDATABLE.lost_race) == (RevertAction.RECHECK, True)
    # no room in the vAMM this block: try again next block, nobody took the position
    assert (OUT_OF_BOUNDS.action, OUT_OF_BOUNDS.lost_race) == (RevertAction.RECHECK, False)
    assert (OTHER.action, OTHER.lost_race) == (RevertAction.RETRY, False)


def test_without_revert_data_the_decoded_text_is_used() -> None:
    assert classify_revert(None, "PositionNotFound(7)") is GONE
    assert classify_revert(None, "NotLiquidatable(7, 10, 5)") is NOT_LIQUIDATABLE
    assert classify_revert(None, "Panic(0x11)") is OTHER
    assert classify_revert(None, "execution reverted") is OTHER
    # the name decides, not a prefix of something else
    assert classify_revert(DecodedError("PositionNotFoundish", (1,))) is OTHER


def test_a_mined_revert_is_a_lost_race_only_when_someone_else_liquidated() -> None:
    assert classify_mined_revert([OTHER_KEEPER], ME) is MINED_LOST_RACE
    assert (
        classify_mined_revert([ME.upper().replace("0X", "0x"), OTHER_KEEPER], ME) is MINED_LOST_RACE
    )
    assert classify_mined_revert([ME.upper().replace("0X", "0x")], ME) is MINED_REVERTED
    assert classify_mined_revert([], ME) is MINED_REVERTED


def test_insolvent_positions_go_first_in_any_keepers_order() -> None:
    targets = [(t, -1 if t % 10 == 0 else 5) for t in range(1, 101)]
    order = dispatch_order(targets, bytes.fromhex("aa" * 20))
    assert set(order[:10]) == {t for t, m in targets if m < 0}
    assert sorted(order) == list(range(1, 101))  # each once


def test_one_keepers_order_is_stable_and_two_keepers_orders_differ() -> None:
    tokens = [(t, 1) for t in range(1, 201)]
    a1 = dispatch_order(tokens, bytes.fromhex("aa" * 20))
    a2 = dispatch_order(list(reversed(tokens)), bytes.fromhex("aa" * 20))
    b = dispatch_order(tokens, bytes.fromhex("bb" * 20))
    assert a1 == a2  # the input order does not matter
    assert a1 != b
    # the two orders are unrelated: a position early for one keeper is anywhere for the other
    rank_b = {t: i for i, t in enumerate(b)}
    near = sum(1 for i, t in enumerate(a1) if abs(rank_b[t] - i) <= 2)
    assert near < 20  # with the rank order, all 200 would coincide
    assert dispatch_key(5, -3, b"k")[0] == 0 and dispatch_key(5, 0, b"k")[0] == 1
