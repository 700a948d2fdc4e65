"""ErrorDecoder.decode_error: a revert's name and arguments, for callers that show them
structured (the trading CLI's JSON)."""

from __future__ import annotations

from eth_abi import encode
from eth_utils import function_signature_to_4byte_selector

from shared.chain.errors import DecodedError, ErrorDecoder

ABI = [
    {
        "type": "error",
        "name": "InsufficientMargin",
        "inputs": [{"name": "margin", "type": "int256"}, {"name": "required", "type": "uint256"}],
    },
    {"type": "error", "name": "ZeroAmount", "inputs": []},
]


def test_decode_error_gives_name_and_args() -> None:
    dec = ErrorDecoder([ABI])
    data = function_signature_to_4byte_selector("InsufficientMargin(int256,uint256)") + encode(
        ["int256", "uint256"], [-5, 7]
    )
    err = dec.decode_error("0x" + data.hex())
    assert err == DecodedError("InsufficientMargin", (-5, 7))
    assert str(err) == dec.decode(data) == "InsufficientMargin(-5, 7)"
    assert dec.decode_error(function_signature_to_4byte_selector("ZeroAmount()")) == DecodedError(
        "ZeroAmount"
    )
    text = dec.decode_error(bytes.fromhex("08c379a0") + encode(["string"], ["boom"]))
    assert text is not None and text.name == "Error" and str(text) == "boom"
    panic = dec.decode_error(bytes.fromhex("4e487b71") + encode(["uint256"], [0x11]))
    assert panic == DecodedError("Panic", (0x11,)) and str(panic) == "Panic(0x11)"
    for unknown in (None, "0x", "0xdeadbeef", "0xzz"):
        assert dec.decode_error(unknown) is None
