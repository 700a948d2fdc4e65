"""A wallet's reads, retried on transient RPC failures and cached where many callers ask at
once: nonces, the txpool, balance, fees, simulation and gas estimate. The first layer of
`TxSender` (shared/chain/tx.py); its attributes are set by `TxSender.__init__`."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from eth_account.signers.local import LocalAccount
from eth_typing import ChecksumAddress
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, Web3RPCError

from shared.chain.errors import ErrorDecoder, ErrorKind, TxRevertedError, classify_message
from shared.chain.fees import FeePolicy, Fees
from shared.chain.tx_errors import is_transient
from shared.chain.tx_model import fees_of, revert_data, rpc_error_data

log = logging.getLogger("shared.chain.tx")
T = TypeVar("T")


class WalletReads:
    w3: AsyncWeb3
    _account: LocalAccount
    decoder: ErrorDecoder
    fees: FeePolicy
    max_retries: int
    backoff_initial_s: float
    backoff_max_s: float
    poll_s: float
    fee_cache_s: float
    balance_cache_s: float
    min_balance_wei: int
    on_low_balance: Callable[[int], None] | None
    last_balance_wei: int | None
    _fee_cache: tuple[float, int, Fees] | None
    _balance_at: float
    _mined_nonce: tuple[float, int] | None
    _mined_lock: asyncio.Lock
    _balance_lock: asyncio.Lock
    _fee_lock: asyncio.Lock
    _refreshing: dict[str, asyncio.Task[None]]

    @property
    def address(self) -> ChecksumAddress:
        return self._account.address

    def _retrying(self, retry: Callable[[BaseException], bool] = is_transient) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential_jitter(
                multiplier=self.backoff_initial_s,
                max=self.backoff_max_s,
                jitter=self.backoff_initial_s,
            ),
            retry=retry_if_exception(retry),
            reraise=True,
        )

    async def _rpc(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()`, retried on transient failures (up to MAX_RETRIES, backoff and jitter)."""
        async for attempt in self._retrying():
            with attempt:
                return await call()
        raise AssertionError("unreachable")  # pragma: no cover

    async def _count(self, block: str) -> int:
        return int(
            await self._rpc(lambda: self.w3.eth.get_transaction_count(self.address, block))  # type: ignore[arg-type]
        )

    async def mined_nonce(self, max_age_s: float | None = None) -> int:
        """The account's nonce at the latest block, read at most once per `max_age_s` (default
        poll_s) however many callers ask: one request serves every pending transaction."""
        max_age = self.poll_s if max_age_s is None else max_age_s
        cached = self._mined_nonce
        if cached is not None and time.monotonic() - cached[0] < max_age:
            return cached[1]
        async with self._mined_lock:
            cached = self._mined_nonce
            if cached is not None and time.monotonic() - cached[0] < max_age:
                return cached[1]
            value = await self._count("latest")
            self._mined_nonce = (time.monotonic(), value)
            return value

    async def in_flight_from_chain(self) -> int:
        """Transactions of this wallet the node can mine and has not (pending - latest)."""
        pending = await self._count("pending")
        mined = await self._count("latest")
        return max(0, pending - mined)

    async def pool_nonces(self) -> dict[int, Fees | None] | None:
        """Nonces the node's txpool holds for this wallet (pending and queued), with their
        fees when the node says; None when the node has no txpool API."""
        me = self.address.lower()
        for method, params in (
            ("txpool_contentFrom", [self.address]),  # geth: only this wallet's
            ("txpool_content", []),
            ("txpool_inspect", []),
        ):
            try:
                resp = await self._rpc(
                    lambda m=method, a=params: self.w3.provider.make_request(m, a)  # type: ignore[arg-type, misc]
                )
            except Exception as exc:
                if is_transient(exc):
                    raise
                continue
            result = resp.get("result") if isinstance(resp, dict) else None
            if not isinstance(result, dict):
                continue  # an error answer: method not found / not allowed
            found: dict[int, Fees | None] = {}
            for section in ("pending", "queued"):
                by_key = result.get(section) or {}
                if not isinstance(by_key, dict):
                    continue
                if method == "txpool_contentFrom":
                    by_key = {me: by_key}
                for address, txs in by_key.items():
                    if str(address).lower() != me or not isinstance(txs, dict):
                        continue
                    for nonce, tx in txs.items():
                        found[int(nonce)] = fees_of(tx)
            return found
        return None

    def _balance_fresh(self) -> bool:
        return (
            self.last_balance_wei is not None
            and self.balance_cache_s > 0
            and time.monotonic() - self._balance_at < self.balance_cache_s
        )

    async def _cached_balance(self) -> tuple[int, bool]:
        """(balance, stale): read at most once per balance_cache_s however many sends ask at
        once. A value somewhat older (up to 10 periods, at least 5 s) is used (stale) while one
        read refreshes it in the background: a slow answer to that read holds up no send."""
        if self._balance_fresh():
            assert self.last_balance_wei is not None
            return self.last_balance_wei, False
        usable = max(10 * self.balance_cache_s, 5.0)
        if self.last_balance_wei is not None and time.monotonic() - self._balance_at < usable:
            self._in_background("balance", self._refresh_balance)
            return self.last_balance_wei, True
        async with self._balance_lock:
            if self._balance_fresh():
                assert self.last_balance_wei is not None
                return self.last_balance_wei, False
            return await self.balance(), False

    def refresh_in_background(self) -> None:
        """Refresh the fees (and the balance) if they are due, without waiting: a caller that
        is about to send (the keeper, at each new block) keeps them warm, so its first send
        after a quiet while does not wait for them (or for a slow answer to them)."""
        cached = self._fee_cache
        if cached is None or time.monotonic() - cached[0] >= self.fee_cache_s:
            self._in_background("fees", self._refresh_fees)
        if not self._balance_fresh():
            self._in_background("balance", self._refresh_balance)

    async def _refresh_balance(self) -> None:
        async with self._balance_lock:
            if not self._balance_fresh():
                await self.balance()

    def _in_background(self, what: str, refresh: Callable[[], Awaitable[Any]]) -> None:
        """Run `refresh()` unless one is running already; its failure is only logged (the next
        caller starts another)."""
        task = self._refreshing.get(what)
        if task is not None and not task.done():
            return

        async def run() -> None:
            try:
                await refresh()
            except Exception as exc:
                log.debug("refreshing the %s failed: %s: %s", what, type(exc).__name__, exc)

        self._refreshing[what] = asyncio.create_task(run(), name=f"tx-refresh-{what}")

    async def balance(self) -> int:
        bal = int(await self._rpc(lambda: self.w3.eth.get_balance(self.address)))
        self.last_balance_wei = bal
        self._balance_at = time.monotonic()
        if self.min_balance_wei and bal < self.min_balance_wei:
            log.warning(
                "wallet %s balance low: %.6f ETH < threshold %.6f ETH",
                self.address,
                bal / 1e18,
                self.min_balance_wei / 1e18,
            )
            if self.on_low_balance:
                self.on_low_balance(bal)
        return bal

    async def simulate(self, tx: dict[str, Any], block: str | int = "latest") -> bytes:
        """eth_call: the return data, or TxRevertedError with the decoded reason."""
        call = {**tx, "from": self.address}
        try:
            return bytes(await self._rpc(lambda: self.w3.eth.call(call, block)))  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as exc:
            raise self._reverted(exc) from None

    async def estimate(self, tx: dict[str, Any]) -> int:
        """eth_estimateGas, which executes the transaction on the latest state: the gas it
        needs, or TxRevertedError with the decoded reason (it is the simulation)."""
        call = {**tx, "from": self.address}
        try:
            return int(await self._rpc(lambda: self.w3.eth.estimate_gas(call)))  # type: ignore[arg-type]
        except (ContractLogicError, Web3RPCError) as exc:
            raise self._reverted(exc) from None

    def _reverted(self, exc: ContractLogicError | Web3RPCError) -> Exception:
        if isinstance(exc, ContractLogicError):
            return TxRevertedError(self.decoder.decode(revert_data(exc)), revert_data(exc))
        if classify_message(str(exc)) == ErrorKind.REVERT:
            data = rpc_error_data(exc)
            return TxRevertedError(self.decoder.decode(data) if data else str(exc), data)
        return exc

    async def current_fees(self, fresh: bool = False) -> tuple[int, Fees]:
        """(base fee of the next block, fees for a new transaction). Cached for fee_cache_s
        unless `fresh` (replacements always read fresh values)."""
        cached = self._fee_cache
        if not fresh and cached is not None and time.monotonic() - cached[0] < self.fee_cache_s:
            return cached[1], cached[2]
        if fresh:
            return await self._read_fees()
        if cached is not None and time.monotonic() - cached[0] < max(10 * self.fee_cache_s, 5.0):
            # somewhat old, still usable (maxFee covers six blocks of base-fee growth; a
            # replacement follows the base fee): refreshed in the background, waited for by
            # no send
            self._in_background("fees", self._refresh_fees)
            return cached[1], cached[2]
        async with self._fee_lock:  # one read serves every send waiting for it
            cached = self._fee_cache
            if cached is not None and time.monotonic() - cached[0] < self.fee_cache_s:
                return cached[1], cached[2]
            return await self._read_fees()

    async def _refresh_fees(self) -> None:
        async with self._fee_lock:
            cached = self._fee_cache
            if cached is None or time.monotonic() - cached[0] >= self.fee_cache_s:
                await self._read_fees()

    async def _read_fees(self) -> tuple[int, Fees]:
        # The pending block's base fee is the one the next block will charge.
        try:
            block = await self._rpc(lambda: self.w3.eth.get_block("pending"))
        except Web3RPCError as exc:
            if is_transient(exc):
                raise
            block = await self._rpc(lambda: self.w3.eth.get_block("latest"))
        base_fee = int(block.get("baseFeePerGas", 0) or 0)
        try:
            priority = int(await self._rpc(lambda: self.w3.eth.max_priority_fee))  # type: ignore[arg-type, return-value]
        except Web3RPCError as exc:
            if is_transient(exc):
                raise
            priority = 0
        fees = self.fees.initial(base_fee, priority)
        self._fee_cache = (time.monotonic(), base_fee, fees)
        return base_fee, fees
