"""Liquidations simulated on the pending block, many in one eth_call.

A node answers an eth_call on the "pending" block by first executing the transactions it holds
for the next block (anvil: ~12 ms with 200 liquidations queued, where a call on the latest
block takes ~1 ms). One pending call per liquidation made the keeper's 500-liquidation burst
three times slower; so requests are gathered and simulated together: one eth_call of
LiquidationSimulator.simulate(positionManager, ids) (contracts/src/periphery, never deployed:
its code is put at SIMULATOR_ADDRESS by the call's state override) runs liquidatePosition(id)
for each id in turn, each on the state the previous ones leave, as this keeper's transactions
will run, and returns each one's return data (closed, reward) or revert data.

The first request waits WINDOW_S for others; at most MAX_BATCH go in one call. One call is out
at a time, so the requests that arrive meanwhile make the next batch larger (in the benchmark's
500-liquidation burst: ~40 calls of ~12 liquidations) - unless it takes longer than STALL_S (a
slow answer): then another batch goes out beside it, up to MAX_IN_FLIGHT, so a slow answer
never holds every liquidation back. Transient RPC failures are retried with backoff. A node
that refuses state overrides (or the batch call) gets one eth_call per liquidation on the
pending block instead (logged once).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector
from web3 import AsyncWeb3
from web3.types import RPCEndpoint

from shared.chain.abi import load_artifact
from shared.chain.errors import ErrorKind, TxRevertedError, classify_message
from shared.chain.tx import is_transient

log = logging.getLogger("perpex.keeper.pending")

SIMULATOR_ADDRESS = "0x00000000000000000000000000000000005117a7"
MAX_BATCH = 32
MAX_IN_FLIGHT = 4
STALL_S = 0.25
WINDOW_S = 0.002
_SELECTOR = function_signature_to_4byte_selector("simulate(address,uint256[])")


@dataclass(frozen=True, slots=True)
class SimResult:
    ok: bool
    data: bytes  # the return data (closed, reward), or the revert data
    reason: str | None = None  # a decoded revert reason when the data did not come back


class BatchCallError(RuntimeError):
    """The node answered the batch call with an error that is not transient."""


class PendingSimulator:
    def __init__(
        self,
        w3: AsyncWeb3,
        position_manager: str,
        caller: str,
        single: Callable[[int], Awaitable[SimResult]],
        max_retries: int = 5,
        max_batch: int = MAX_BATCH,
        window_s: float = WINDOW_S,
    ):
        self.w3 = w3
        self.position_manager = position_manager
        self.caller = caller
        self.single = single  # one liquidation on the pending block (the fallback)
        self.max_retries = max_retries
        self.max_batch = max_batch
        self.window_s = window_s
        self.batching = True
        self.calls = 0  # batch eth_calls made
        self.simulated = 0  # liquidations simulated in them
        self._code = load_artifact("LiquidationSimulator").deployed_bytecode
        self._queue: list[tuple[int, asyncio.Future[SimResult]]] = []
        self._active = 0  # batch calls out
        self._freed = asyncio.Event()  # set when one comes back
        self._flusher: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def simulate(self, token_id: int) -> SimResult:
        if not self.batching:
            return await self.single(token_id)
        future: asyncio.Future[SimResult] = asyncio.get_running_loop().create_future()
        self._queue.append((token_id, future))
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush(), name="keeper-pending-sim")
        return await future

    async def _flush(self) -> None:
        await asyncio.sleep(self.window_s)
        while self._queue:
            await self._wait_turn()
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            self._active += 1
            task = asyncio.create_task(self._run(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _wait_turn(self) -> None:
        """Until no batch call is out, or the one out has taken STALL_S (and fewer than
        MAX_IN_FLIGHT are out)."""
        deadline = time.monotonic() + STALL_S
        while self._active and (self._active >= MAX_IN_FLIGHT or time.monotonic() < deadline):
            self._freed.clear()
            wait = None if self._active >= MAX_IN_FLIGHT else deadline - time.monotonic()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._freed.wait(), wait)

    async def _run(self, batch: list[tuple[int, asyncio.Future[SimResult]]]) -> None:
        try:
            if self.batching:
                try:
                    results = await self._batch([t for t, _ in batch])
                except BatchCallError as exc:
                    self.batching = False
                    log.warning(
                        "the node refuses the batch simulation (%s): simulating each "
                        "liquidation on the pending block on its own",
                        exc,
                    )
                    results = None
            else:
                results = None
            if results is None:
                results = list(await asyncio.gather(*(self.single(t) for t, _ in batch)))
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)
        except Exception as exc:
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
        finally:
            self._active -= 1
            self._freed.set()

    async def _batch(self, token_ids: list[int]) -> list[SimResult]:
        data = (
            "0x"
            + (
                _SELECTOR + abi_encode(["address", "uint256[]"], [self.position_manager, token_ids])
            ).hex()
        )
        call = {"from": self.caller, "to": SIMULATOR_ADDRESS, "data": data}
        params = [call, "pending", {SIMULATOR_ADDRESS: {"code": self._code}}]
        delay = 0.05
        for attempt in range(self.max_retries + 1):
            try:
                resp = await self.w3.provider.make_request(RPCEndpoint("eth_call"), params)
            except Exception as exc:
                if not is_transient(exc) or attempt == self.max_retries:
                    raise
            else:
                if "error" not in resp:
                    break
                error = resp["error"]
                message = (
                    error.get("message", str(error)) if isinstance(error, dict) else str(error)
                )
                if classify_message(message) != ErrorKind.TRANSIENT:
                    raise BatchCallError(message)
                if attempt == self.max_retries:
                    raise RuntimeError(f"eth_call: {message}")
            await asyncio.sleep(delay)
            delay = min(delay * 2, 2.0)
        raw = bytes.fromhex(str(resp["result"]).removeprefix("0x"))
        ok, results = abi_decode(["bool[]", "bytes[]"], raw)
        self.calls += 1
        self.simulated += len(token_ids)
        return [SimResult(bool(o), bytes(r)) for o, r in zip(ok, results, strict=True)]

    async def close(self) -> None:
        for task in [self._flusher, *self._tasks]:
            if task is not None and not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task


async def simulate_one(
    simulate: Callable[[dict[str, Any], str], Awaitable[bytes]], tx: dict[str, Any]
) -> SimResult:
    """One liquidation on the pending block through TxSender.simulate (eth_call)."""
    try:
        return SimResult(True, await simulate(tx, "pending"))
    except TxRevertedError as exc:
        data = bytes.fromhex(exc.data.removeprefix("0x")) if exc.data else b""
        return SimResult(False, data, exc.reason)
