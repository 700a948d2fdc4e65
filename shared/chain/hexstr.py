"""0x-prefixed hex text for the values web3 hands back (bytes, HexBytes, or text)."""

from __future__ import annotations

from typing import Any


def hex_str(value: Any) -> str:
    """bytes -> 0x + hex; text is prefixed with 0x when it lacks it."""
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text
