"""The transaction sender used by the keeper and the funding updater.

simulate (eth_call) -> estimate gas x GAS_MULTIPLIER -> EIP-1559 fees -> balance check ->
sign with a locally managed nonce -> send -> wait for the receipt, replacing the transaction
with bumped fees (same nonce) when it is not mined in time. Transient RPC errors are retried
with exponential backoff and jitter up to MAX_RETRIES; reverts are final and carry a decoded
reason; nonce errors resync the nonce from the chain. The private key never leaves the
signer: it is not logged, not put in exceptions and not kept as plain text on the object.

Concurrency: many sends may run at once (the keeper liquidates hundreds of positions in one
block). Simulation and gas estimation run concurrently; nonce assignment, the balance check,
signing and broadcasting are serialized, and the local nonce only advances when the node
accepted the transaction, so a failed broadcast never leaves a gap and a resync never hands out
a nonce that another in-flight send already used. The balance check counts the worst-case cost
of every transaction still pending. Confirmation polls the account's mined nonce once per poll
for all pending transactions and reads receipts only once their nonce is used.

`submit()` broadcasts and returns the tracked `PendingTx`; `finish()` waits for it (replacing it
when stuck); `send()` does both.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys import keys as eth_keys
from eth_typing import ChecksumAddress
from pydantic import SecretStr
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from web3 import AsyncWeb3
from web3.exceptions import ContractLogicError, TransactionNotFound, Web3RPCError

from shared.chain.errors import (
    ErrorDecoder,
    ErrorKind,
    InsufficientBalanceError,
    TxMinedRevertedError,
    TxRevertedError,
    classify_message,
)
from shared.chain.fees import FeeCapExceeded, FeePolicy, Fees, gas_limit, max_cost_wei
from shared.telemetry import meter, tracer

log = logging.getLogger(__name__)
_tracer = tracer("perpex.tx")
_meter = meter("perpex.tx")
_sent_counter = _meter.create_counter("perpex_tx_sent", description="transactions broadcast")
_replaced_counter = _meter.create_counter(
    "perpex_tx_replaced", description="fee-bumped replacements"
)


class TxTimeoutError(RuntimeError):
    pass


class TxNonceConsumedError(RuntimeError):
    """The nonce of a pending transaction was used by a transaction we did not send (the wallet
    is shared with another process): none of our hashes will ever be mined."""


def is_transient(exc: BaseException) -> bool:
    if isinstance(
        exc, (TxRevertedError, InsufficientBalanceError, TxTimeoutError, TxNonceConsumedError)
    ):
        return False
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError, OSError)):
        return True
    if isinstance(exc, json.JSONDecodeError):
        return True  # an answer cut short (a proxy or the provider dropped the connection)
    if isinstance(exc, Web3RPCError):
        return classify_message(str(exc)) == ErrorKind.TRANSIENT
    name = type(exc).__name__
    return (
        name
        in {
            "ClientConnectorError",
            "ServerDisconnectedError",
            "ClientResponseError",
            "ClientOSError",
            "HTTPError",
        }
        or "Timeout" in name
    )


_NOT_CONNECTED = ("ClientConnectorError", "ConnectError", "ConnectTimeout")


def _maybe_delivered(exc: BaseException) -> bool:
    """A transient failure after the request may have reached the node (not a refused or
    failed connection)."""
    if isinstance(exc, ConnectionRefusedError) or type(exc).__name__ in _NOT_CONNECTED:
        return False
    return not isinstance(exc, Web3RPCError) and is_transient(exc)


def _retryable(exc: BaseException) -> bool:
    """Transient failures, and nonce errors (the nonce was resynced from the chain)."""
    if isinstance(exc, Web3RPCError) and classify_message(str(exc)) == ErrorKind.NONCE:
        return True
    return is_transient(exc)


@dataclass
class PendingTx:
    label: str
    nonce: int
    gas: int
    fees: Fees
    tx: dict[str, Any]
    hashes: list[str] = field(default_factory=list)
    sent_at: float = field(default_factory=time.monotonic)


@dataclass
class SenderStats:
    sent: int = 0
    replaced: int = 0
    confirmed: int = 0
    reverted: int = 0


class TxSender:
    def __init__(
        self,
        w3: AsyncWeb3,
        private_key: SecretStr,
        chain_id: int,
        *,
        gas_multiplier: float = 1.2,
        max_retries: int = 5,
        error_decoder: ErrorDecoder | None = None,
        fee_policy: FeePolicy | None = None,
        replace_after_s: float = 15.0,
        confirm_timeout_s: float = 180.0,
        poll_s: float = 0.25,
        min_balance_wei: int = 0,
        on_low_balance: Callable[[int], None] | None = None,
        backoff_initial_s: float = 0.5,
        backoff_max_s: float = 10.0,
        fee_cache_s: float = 0.0,
        balance_cache_s: float = 0.0,
        gas_headroom: int = 0,
    ):
        self.w3 = w3
        self._account: LocalAccount = Account.from_key(private_key.get_secret_value())
        # Signing with a parsed key object skips re-deriving the public key on every signature.
        self._signing_key = eth_keys.PrivateKey(bytes(self._account.key))
        self.chain_id = chain_id
        self.gas_multiplier = gas_multiplier
        # Gas added to every limit after the multiplier: the estimate runs on the latest block,
        # and a call whose path depends on the time (funding settled only when some accrued
        # since) can take a costlier branch in the block that mines it. Unused gas is not paid.
        self.gas_headroom = gas_headroom
        self.max_retries = max_retries
        self.decoder = error_decoder or ErrorDecoder()
        self.fees = fee_policy or FeePolicy()
        self.replace_after_s = replace_after_s
        self.confirm_timeout_s = confirm_timeout_s
        self.poll_s = poll_s
        self.min_balance_wei = min_balance_wei
        self.on_low_balance = on_low_balance
        self.backoff_initial_s = backoff_initial_s
        self.backoff_max_s = backoff_max_s
        self.fee_cache_s = fee_cache_s
        self.balance_cache_s = balance_cache_s
        self._nonce: int | None = None
        self._nonce_lock = asyncio.Lock()  # nonce, balance check, sign, broadcast: one at a time
        self._fee_cache: tuple[float, int, Fees] | None = None
        self._balance_at = 0.0
        self._mined_nonce: tuple[float, int] | None = None
        self._mined_lock = asyncio.Lock()
        self.pending: dict[int, PendingTx] = {}
        self.stats = SenderStats()
        self.last_balance_wei: int | None = None

    def __repr__(self) -> str:  # never the key
        return f"TxSender(address={self.address})"

    @property
    def address(self) -> ChecksumAddress:
        return self._account.address

    # ---- nonce ----
    async def sync_nonce(self) -> int:
        async with self._nonce_lock:
            self._nonce = await self.w3.eth.get_transaction_count(self.address, "pending")
            return self._nonce

    async def _current_nonce(self) -> int:
        """The next nonce to use (caller holds _nonce_lock)."""
        if self._nonce is None:
            self._nonce = await self.w3.eth.get_transaction_count(self.address, "pending")
        return self._nonce

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
            value = int(await self.w3.eth.get_transaction_count(self.address, "latest"))
            self._mined_nonce = (time.monotonic(), value)
            return value

    async def in_flight_from_chain(self) -> int:
        """Transactions of this wallet in the mempool but not mined (e.g. from a previous run)."""
        pending = await self.w3.eth.get_transaction_count(self.address, "pending")
        mined = await self.w3.eth.get_transaction_count(self.address, "latest")
        return max(0, pending - mined)

    async def wait_for_in_flight(self, timeout_s: float = 60.0) -> int:
        """On start: wait until transactions left by a previous run are mined, so that nothing
        is sent twice. Returns how many there were."""
        count = await self.in_flight_from_chain()
        deadline = time.monotonic() + timeout_s
        while await self.in_flight_from_chain() > 0:
            if time.monotonic() > deadline:
                log.warning("%d transactions of a previous run are still pending", count)
                break
            await asyncio.sleep(self.poll_s)
        await self.sync_nonce()
        return count

    # ---- balance ----
    def reserved_wei(self) -> int:
        """Worst-case cost of every transaction sent and not yet confirmed."""
        return sum(
            max_cost_wei(p.gas, p.fees, int(p.tx.get("value", 0))) for p in self.pending.values()
        )

    async def _cached_balance(self) -> int:
        if (
            self.last_balance_wei is not None
            and self.balance_cache_s > 0
            and time.monotonic() - self._balance_at < self.balance_cache_s
        ):
            return self.last_balance_wei
        return await self.balance()

    async def balance(self) -> int:
        bal = int(await self.w3.eth.get_balance(self.address))
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

    # ---- building blocks ----
    async def simulate(self, tx: dict[str, Any], block: str = "latest") -> bytes:
        call = {**tx, "from": self.address}
        try:
            return bytes(await self.w3.eth.call(call, block))  # type: ignore[arg-type]
        except ContractLogicError as exc:
            raise TxRevertedError(
                self.decoder.decode(_revert_data(exc)), _revert_data(exc)
            ) from None
        except Web3RPCError as exc:
            if classify_message(str(exc)) == ErrorKind.REVERT:
                data = _rpc_error_data(exc)
                raise TxRevertedError(
                    self.decoder.decode(data) if data else str(exc), data
                ) from None
            raise

    async def current_fees(self, fresh: bool = False) -> tuple[int, Fees]:
        """(base fee of the next block, fees for a new transaction). Cached for fee_cache_s
        unless `fresh` (replacements always read fresh values)."""
        cached = self._fee_cache
        if not fresh and cached is not None and time.monotonic() - cached[0] < self.fee_cache_s:
            return cached[1], cached[2]
        # The pending block's base fee is the one the next block will charge.
        try:
            block = await self.w3.eth.get_block("pending")
        except Web3RPCError:
            block = await self.w3.eth.get_block("latest")
        base_fee = int(block.get("baseFeePerGas", 0) or 0)
        try:
            priority = int(await self.w3.eth.max_priority_fee)
        except Web3RPCError:
            priority = 0
        fees = self.fees.initial(base_fee, priority)
        self._fee_cache = (time.monotonic(), base_fee, fees)
        return base_fee, fees

    async def _retrying(self) -> AsyncRetrying:
        return AsyncRetrying(
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential_jitter(multiplier=self.backoff_initial_s, max=self.backoff_max_s),
            retry=retry_if_exception(_retryable),
            reraise=True,
        )

    # ---- the full path ----
    async def send(self, tx: dict[str, Any], label: str = "tx") -> dict[str, Any]:
        """Simulate, send and confirm `tx` (to/data/value). Returns the receipt."""
        pending = await self.submit(tx, label)
        return await self.finish(pending)

    async def submit(self, tx: dict[str, Any], label: str = "tx") -> PendingTx:
        """Simulate and broadcast `tx` (retrying transient failures); returns it tracked as
        pending. Raises TxRevertedError when the simulation reverts (nothing is sent)."""
        with _tracer.start_as_current_span("tx.send", attributes={"tx.label": label}) as span:
            async for attempt in await self._retrying():
                with attempt:
                    pending = await self._broadcast(tx, label)
            span.set_attribute("tx.nonce", pending.nonce)
            span.set_attribute("tx.hash", pending.hashes[-1])
        return pending

    async def finish(self, pending: PendingTx) -> dict[str, Any]:
        """Wait for a submitted transaction (replacing it while stuck). Returns the receipt;
        raises TxMinedRevertedError when it was mined but reverted (gas was spent)."""
        label = pending.label
        with _tracer.start_as_current_span("tx.confirm", attributes={"tx.label": label}) as span:
            receipt = await self.confirm(pending)
            span.set_attribute("tx.hash", _hex(receipt["transactionHash"]))
            span.set_attribute("tx.gas_used", int(receipt["gasUsed"]))
            span.set_attribute("tx.replacements", len(pending.hashes) - 1)
        if int(receipt["status"]) != 1:
            self.stats.reverted += 1
            raise TxMinedRevertedError(
                f"{label} mined but reverted (tx {_hex(receipt['transactionHash'])})",
                tx_hash=_hex(receipt["transactionHash"]),
                gas_used=int(receipt["gasUsed"]),
            )
        self.stats.confirmed += 1
        return dict(receipt)

    async def _broadcast(self, tx: dict[str, Any], label: str) -> PendingTx:
        await self.simulate(tx)
        estimate = await self.w3.eth.estimate_gas({**tx, "from": self.address})  # type: ignore[typeddict-item]
        gas = gas_limit(int(estimate), self.gas_multiplier) + self.gas_headroom
        _, fees = await self.current_fees()
        cost = max_cost_wei(gas, fees, int(tx.get("value", 0)))
        async with self._nonce_lock:
            balance = await self._cached_balance()
            reserved = self.reserved_wei()
            if balance - reserved < cost:
                raise InsufficientBalanceError(
                    f"wallet {self.address} holds {balance} wei ({reserved} reserved by pending "
                    f"transactions); {label} may cost up to {cost} wei"
                )
            nonce = await self._current_nonce()
            pending = PendingTx(label=label, nonce=nonce, gas=gas, fees=fees, tx=dict(tx))
            try:
                await self._send_signed(pending)
            except Web3RPCError as exc:
                if classify_message(str(exc)) == ErrorKind.NONCE:
                    # Someone else used the wallet: resync (nothing of ours is in between).
                    self._nonce = await self.w3.eth.get_transaction_count(self.address, "pending")
                raise
            # Only now is the nonce used; a failed broadcast leaves no gap.
            self._nonce = nonce + 1
            self.pending[nonce] = pending
        return pending

    async def _send_signed(self, pending: PendingTx) -> str:
        full = {
            **pending.tx,
            "from": self.address,
            "nonce": pending.nonce,
            "gas": pending.gas,
            "chainId": self.chain_id,
            "type": 2,
            **pending.fees.as_tx(),
        }
        full.setdefault("value", 0)
        signed = Account.sign_transaction(full, self._signing_key)
        try:
            tx_hash = _hex(await self.w3.eth.send_raw_transaction(signed.raw_transaction))
        except Web3RPCError as exc:
            kind = classify_message(str(exc))
            if kind == ErrorKind.ALREADY_KNOWN:
                tx_hash = _hex(signed.hash)
            elif kind == ErrorKind.NONCE:
                raise
            elif kind == ErrorKind.INSUFFICIENT_FUNDS:
                raise InsufficientBalanceError(
                    f"node rejected {pending.label}: insufficient funds"
                ) from None
            else:
                raise
        except Exception as exc:
            if not _maybe_delivered(exc):
                raise
            # The node may have the transaction (an answer lost to a timeout or a dropped
            # connection). Treat it as sent: the nonce is taken and it is tracked. Were it not
            # delivered, nothing uses the nonce and confirm's replacement sends it again;
            # sending a fresh one now instead would leave an untracked twin holding the nonce.
            tx_hash = _hex(signed.hash)
            log.warning(
                "%s nonce=%d: no answer to the broadcast (%s: %s); tracking %s as sent",
                pending.label,
                pending.nonce,
                type(exc).__name__,
                exc,
                tx_hash,
            )
        pending.hashes.append(tx_hash)
        pending.sent_at = time.monotonic()
        self.stats.sent += 1
        _sent_counter.add(1, {"label": pending.label})
        log.info(
            "sent %s nonce=%d hash=%s maxFee=%d",
            pending.label,
            pending.nonce,
            tx_hash,
            pending.fees.max_fee_per_gas,
        )
        return tx_hash

    async def confirm(self, pending: PendingTx) -> Any:
        """Wait for any of the pending transaction's hashes to be mined, replacing it with a
        fee bump every `replace_after_s`. Receipts are read only once the account's mined nonce
        has passed this transaction's nonce (or when that nonce cannot be read)."""
        deadline = time.monotonic() + self.confirm_timeout_s
        consumed_since: float | None = None
        try:
            while time.monotonic() < deadline:
                try:
                    mined: int | None = await self.mined_nonce()
                except Exception as exc:
                    if not is_transient(exc):
                        raise
                    mined = None
                if mined is None or mined > pending.nonce:
                    for tx_hash in reversed(pending.hashes):
                        receipt = await self._receipt(tx_hash)
                        if receipt is not None:
                            return receipt
                    if mined is not None:
                        # Used, yet none of our hashes has a receipt: a lagging node, or a
                        # transaction we did not send took the nonce.
                        consumed_since = consumed_since or time.monotonic()
                        if time.monotonic() - consumed_since > max(5.0, 20 * self.poll_s):
                            raise TxNonceConsumedError(
                                f"{pending.label}: nonce {pending.nonce} was used by another "
                                "transaction"
                            )
                elif time.monotonic() - pending.sent_at >= self.replace_after_s:
                    try:
                        await self._replace(pending)
                    except Exception as exc:
                        # The transaction is still out there: never abandon it over a failed
                        # bump (an RPC blip, a bumped cost above the balance); keep waiting
                        # for it and try the bump again later.
                        if not (is_transient(exc) or isinstance(exc, InsufficientBalanceError)):
                            raise
                        log.warning(
                            "could not replace %s nonce=%d (%s: %s); still waiting for it",
                            pending.label,
                            pending.nonce,
                            type(exc).__name__,
                            exc,
                        )
                        pending.sent_at = time.monotonic()
                await asyncio.sleep(self.poll_s)
            raise TxTimeoutError(
                f"{pending.label} nonce {pending.nonce} not mined after {self.confirm_timeout_s:.0f}s"
            )
        finally:
            self.pending.pop(pending.nonce, None)

    def track(self, pending: PendingTx) -> None:
        """Track `pending` again after `confirm` gave up on it (TxTimeoutError) while it is
        still out there: its cost stays reserved, and a new `confirm` goes on replacing it."""
        self.pending[pending.nonce] = pending

    async def _receipt(self, tx_hash: str) -> Any:
        try:
            return await self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None
        except Web3RPCError as exc:
            if is_transient(exc):
                return None
            raise
        except (TimeoutError, OSError):
            return None

    async def _replace(self, pending: PendingTx) -> None:
        base_fee, _ = await self.current_fees(fresh=True)
        try:
            new_fees = self.fees.bump(pending.fees, base_fee)
        except FeeCapExceeded as exc:
            log.warning("not replacing %s nonce=%d: %s", pending.label, pending.nonce, exc)
            pending.sent_at = time.monotonic()
            return
        old = pending.fees
        pending.fees = new_fees
        try:
            await self._send_signed(pending)
        except Web3RPCError as exc:
            kind = classify_message(str(exc))
            if kind == ErrorKind.NONCE:
                # The nonce is used: one of our hashes mined (the receipt shows up next poll).
                pending.fees = old
                pending.sent_at = time.monotonic()
                return
            if kind == ErrorKind.UNDERPRICED:
                pending.sent_at = time.monotonic()  # try a higher bump next round
                return
            pending.fees = old
            raise
        except BaseException:
            pending.fees = old  # not sent: what is out there still has the old fees
            raise
        self.stats.replaced += 1
        _replaced_counter.add(1, {"label": pending.label})
        log.warning(
            "replaced %s nonce=%d: maxFee %d -> %d, priority %d -> %d",
            pending.label,
            pending.nonce,
            old.max_fee_per_gas,
            new_fees.max_fee_per_gas,
            old.max_priority_fee_per_gas,
            new_fees.max_priority_fee_per_gas,
        )

    async def wait_pending(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for tracked pending transactions to settle (shutdown)."""
        deadline = time.monotonic() + timeout_s
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(self.poll_s)
        return not self.pending


def _hex(value: Any) -> str:
    if isinstance(value, (bytes, bytearray)):
        return "0x" + bytes(value).hex()
    text = str(value)
    return text if text.startswith("0x") else "0x" + text


def _revert_data(exc: ContractLogicError) -> str | None:
    data = exc.data
    if isinstance(data, dict):
        data = data.get("data")  # type: ignore[assignment]
    return data if isinstance(data, str) else None


def _rpc_error_data(exc: Web3RPCError) -> str | None:
    resp = exc.rpc_response or {}
    err = resp.get("error") if isinstance(resp, dict) else None
    data = err.get("data") if isinstance(err, dict) else None
    return data if isinstance(data, str) else None
