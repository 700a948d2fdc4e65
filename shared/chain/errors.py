"""Classify JSON-RPC failures and decode revert reasons (pure).

Transient errors (connection drops, timeouts, 429/5xx) are retried with backoff; a revert is
final and reported with its decoded reason; nonce errors resync the nonce from the chain.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from enum import Enum
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import function_signature_to_4byte_selector

from shared.chain.abi import abi_type

ERROR_STRING_SELECTOR = bytes.fromhex("08c379a0")  # Error(string)
PANIC_SELECTOR = bytes.fromhex("4e487b71")  # Panic(uint256)


class ErrorKind(Enum):
    TRANSIENT = "transient"
    REVERT = "revert"
    NONCE = "nonce"
    UNDERPRICED = "underpriced"
    ALREADY_KNOWN = "already_known"
    INSUFFICIENT_FUNDS = "insufficient_funds"
    FATAL = "fatal"


class TxRevertedError(RuntimeError):
    """A call or transaction reverted. `reason` is decoded when the ABI knows the error."""

    def __init__(self, reason: str, data: str | None = None):
        super().__init__(f"reverted: {reason}")
        self.reason = reason
        self.data = data


class TxMinedRevertedError(TxRevertedError):
    """The transaction was mined but reverted: unlike a reverted simulation, it cost gas."""

    def __init__(
        self,
        reason: str,
        tx_hash: str | None = None,
        gas_used: int | None = None,
        block_number: int | None = None,
    ):
        super().__init__(reason)
        self.tx_hash = tx_hash
        self.gas_used = gas_used
        self.block_number = block_number


class InsufficientBalanceError(RuntimeError):
    pass


def classify_message(message: str) -> ErrorKind:
    m = message.lower()
    if "nonce too low" in m or "nonce too high" in m or "invalid nonce" in m:
        return ErrorKind.NONCE
    if "already known" in m or "already imported" in m:
        return ErrorKind.ALREADY_KNOWN
    if "underpriced" in m or "fee too low" in m or "less than block base fee" in m:
        return ErrorKind.UNDERPRICED
    if "insufficient funds" in m:
        return ErrorKind.INSUFFICIENT_FUNDS
    if "revert" in m or "execution reverted" in m:
        return ErrorKind.REVERT
    if any(
        s in m
        for s in (
            "timeout",
            "timed out",
            "429",
            "too many requests",
            "502",
            "503",
            "504",
            "connection",
            "temporarily",
            "reset by peer",
            "eof",
        )
    ):
        return ErrorKind.TRANSIENT
    return ErrorKind.FATAL


class ErrorDecoder:
    """Decodes revert data using the custom errors declared in contract ABIs."""

    def __init__(self, abis: Iterable[list[dict[str, Any]]] = ()):
        self._errors: dict[bytes, tuple[str, list[str]]] = {}
        for abi in abis:
            for item in abi:
                if item.get("type") == "error":
                    types = [abi_type(i) for i in item.get("inputs", [])]
                    sig = f"{item['name']}({','.join(types)})"
                    self._errors[function_signature_to_4byte_selector(sig)] = (item["name"], types)

    def describe(self, exc: BaseException) -> str:
        """A web3 revert (ContractCustomError / ContractLogicError) as the contract's error name
        and arguments; anything else as its message."""
        data = getattr(exc, "data", None)
        if isinstance(data, str) and data.startswith("0x") and len(data) >= 10:
            return self.decode(data)
        if isinstance(data, bytes) and len(data) >= 4:
            return self.decode(data)
        return str(exc)

    def decode(self, data: str | bytes | None) -> str:
        if data is None:
            return "no revert data"
        decoded = self.decode_error(data)
        if decoded is not None:
            return str(decoded)
        raw = _raw(data)
        if len(raw) < 4:
            return "reverted without a reason"
        return f"unknown error 0x{raw.hex()}"

    def decode_error(self, data: str | bytes | None) -> DecodedError | None:
        """The error's name and arguments, when the data is an Error(string), a Panic or a
        custom error of the ABIs given; None otherwise (no data, unknown selector)."""
        if data is None:
            return None
        try:
            raw = _raw(data)
        except ValueError:
            return None
        if len(raw) < 4:
            return None
        selector, body = raw[:4], raw[4:]
        try:
            if selector == ERROR_STRING_SELECTOR:
                return DecodedError("Error", (str(abi_decode(["string"], body)[0]),), message=True)
            if selector == PANIC_SELECTOR:
                return DecodedError("Panic", (int(abi_decode(["uint256"], body)[0]),))
            if selector in self._errors:
                name, types = self._errors[selector]
                return DecodedError(name, tuple(abi_decode(types, body)) if types else ())
        except Exception:  # malformed revert data: report it raw rather than fail
            pass
        return None


@dataclass(frozen=True)
class DecodedError:
    """A decoded revert: the error's name and its arguments (ABI-decoded values)."""

    name: str
    args: tuple[Any, ...] = ()
    message: bool = False  # Error(string): str() is the message itself

    def __str__(self) -> str:
        if self.message:
            return str(self.args[0])
        if self.name == "Panic":
            return f"Panic(0x{self.args[0]:02x})"
        return f"{self.name}({', '.join(_fmt(a) for a in self.args)})"


def _raw(data: str | bytes) -> bytes:
    if isinstance(data, str):
        return bytes.fromhex(data[2:] if data.startswith("0x") else data)
    return bytes(data)


def _fmt(value: Any) -> str:
    if isinstance(value, bytes):
        return "0x" + value.hex()
    return str(value)
