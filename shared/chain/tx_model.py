"""The transaction sender's ledger entries and counters (plain data), and small helpers shared
by its parts (shared/chain/tx.py)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from web3.exceptions import ContractLogicError, Web3RPCError

from shared.chain.fees import Fees
from shared.chain.nonces import Broadcast
from shared.telemetry import meter

_meter = meter("perpex.tx")
sent_counter = _meter.create_counter("perpex_tx_sent", description="transactions broadcast")
replaced_counter = _meter.create_counter(
    "perpex_tx_replaced", description="fee-bumped replacements"
)
rebroadcast_counter = _meter.create_counter(
    "perpex_tx_rebroadcast",
    description="broadcasts whose answer was lost, sent again (same bytes) as the node lacked them",
)
cancelled_counter = _meter.create_counter(
    "perpex_tx_cancelled", description="nonces filled with a zero-value self-transfer"
)

CANCEL_GAS = 21_000


@dataclass
class PendingTx:
    label: str
    nonce: int
    gas: int
    fees: Fees
    tx: dict[str, Any]
    hashes: list[str] = field(default_factory=list)
    sent_at: float = field(default_factory=time.monotonic)
    created_at: float = field(default_factory=time.monotonic)
    kind: str = "work"  # "work" (a caller's transaction) or "cancel" (filling a nonce)
    raw: bytes | None = field(default=None, repr=False)  # the latest signed version
    broadcast: Broadcast = Broadcast.SENT  # of the latest version
    checks: int = 0
    checked_at: float = 0.0
    cancelling: bool = False  # its work was given up: later versions are cancellations
    cancel_hashes: set[str] = field(default_factory=set)  # versions that are cancellations
    consumed_since: float | None = None
    receipt: Any = field(default=None, repr=False)
    error: BaseException | None = field(default=None, repr=False)
    done: asyncio.Event = field(default_factory=asyncio.Event, repr=False)


@dataclass
class SenderStats:
    sent: int = 0
    replaced: int = 0
    confirmed: int = 0
    reverted: int = 0
    rebroadcast: int = 0
    cancelled: int = 0
    consumed: int = 0


@dataclass(frozen=True)
class ReconcileResult:
    waited: int  # a previous run's transactions the node could mine (waited for)
    cancelled: int  # nonces cancelled (a gap and what queued behind it, or stuck leftovers)

    @property
    def found(self) -> int:
        return self.waited + self.cancelled


async def each_pending(
    items: Iterable[PendingTx], fn: Callable[[PendingTx], Awaitable[None]]
) -> None:
    """fn(item) for each, at most 16 at once; one item's failure neither stops the others nor
    is lost (the first is raised once all are done)."""
    sem = asyncio.Semaphore(16)

    async def one(item: PendingTx) -> None:
        async with sem:
            await fn(item)

    results = await asyncio.gather(*(one(i) for i in items), return_exceptions=True)
    for result in results:
        if isinstance(result, BaseException):
            raise result


def fees_of(tx: Any) -> Fees | None:
    if not isinstance(tx, dict):
        return None  # txpool_inspect: a summary string, no fees
    try:
        if tx.get("maxFeePerGas") is not None:
            return Fees(int(tx["maxFeePerGas"], 16), int(tx["maxPriorityFeePerGas"], 16))
        if tx.get("gasPrice") is not None:
            price = int(tx["gasPrice"], 16)
            return Fees(price, price)
    except (TypeError, ValueError, KeyError):
        return None
    return None


def nonce_ranges(nonces: Iterable[int]) -> str:
    out: list[str] = []
    for n in sorted(nonces):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def hex_str(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text


def revert_data(exc: ContractLogicError) -> str | None:
    data = exc.data
    if isinstance(data, dict):
        data = data.get("data")  # type: ignore[assignment]
    return data if isinstance(data, str) else None


def rpc_error_data(exc: Web3RPCError) -> str | None:
    resp = exc.rpc_response or {}
    err = resp.get("error") if isinstance(resp, dict) else None
    data = err.get("data") if isinstance(err, dict) else None
    return data if isinstance(data, str) else None
