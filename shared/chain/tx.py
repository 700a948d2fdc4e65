"""The transaction sender used by the keeper and the funding updater.

simulate and estimate (one eth_estimateGas: it executes the transaction on the latest state, so
a revert comes back with its decoded reason and nothing is sent) -> gas x GAS_MULTIPLIER ->
EIP-1559 fees -> balance check -> sign with a locally managed nonce -> send -> wait for the
receipt, replacing the transaction with bumped fees (same nonce) when it is not mined in time.
Transient RPC errors (`is_transient`: timeouts, dropped or refused connections, HTTP 429/5xx,
bodies cut short, transient JSON-RPC errors) are retried with exponential backoff and jitter up
to MAX_RETRIES in every RPC path (call, gas estimate, fees, balance, nonce, receipt,
broadcast); reverts are final and carry a decoded reason; nonce errors resync the nonce from
the chain. The private key never leaves the
signer: it is not logged, not put in exceptions and not kept as plain text on the object.

The nonce ledger (`pending`, one per wallet): every nonce the sender hands out stays tracked
until it is mined (one of its signed versions, or another process's transaction when the
wallet is shared), replaced by a fee bump (a new version, still tracked) or deliberately
cancelled (a zero-value transfer to the wallet itself at that nonce). Nothing else removes it:
a caller that stops waiting (a timeout, an error, a shutdown) leaves it to the ledger's
supervisor, one task per sender that, once per poll, reads the account's mined nonce and
- resolves the tracked nonces below it (reads their receipts);
- asks the node about every broadcast whose answer was lost (a timeout, a dropped connection,
  a body cut short: the node may or may not hold it) and sends the same signed bytes again
  until the node knows it (a refused re-broadcast is turned into a cancellation);
- replaces what is not mined after REPLACE_AFTER_S with bumped fees;
- fills any hole (a nonce below a tracked one that nothing tracked holds) with a cancellation,
  so nothing queues behind a nonce for ever; a hole it cannot fill (the node refuses even the
  cancellation, e.g. no gas money) blocks new work (`NonceGapError`) and makes the sender
  `stuck()`, as does a transaction not mined for `stuck_after_s`.
`reconcile()` (at start) compares the chain's mined and pending nonces and the node's txpool
(txpool_contentFrom / txpool_content / txpool_inspect where the node has them) with the ledger: a previous run's
transactions the node can mine are waited for, and every nonce from the first gap up to the
highest known one is cancelled, so a queue left behind a gap neither blocks new work nor mines
later as a burst of stale (reverting) transactions.

Concurrency: many sends may run at once (the keeper liquidates hundreds of positions in one
block). Simulation and fee reads run concurrently (balance and fees are read once for all
waiting sends); the balance check, nonce assignment, signing and tracking are serialized (local
work only), and the broadcast happens outside that lock: a slow or lost answer holds up no
other send. The balance check counts the worst-case cost of every transaction still tracked.

`submit()` broadcasts and returns the tracked `PendingTx`; `finish()` waits for its outcome
(at most CONFIRM_TIMEOUT_S: `TxTimeoutError` leaves it tracked); `send()` does both.

The sender is built in layers, one module each: `tx_reads.WalletReads` (retried, cached reads),
`tx_ledger.TxLedger` (nonces, signing, broadcasts, cancellations), `tx_supervisor.
LedgerSupervisor` (the ledger's task) and `TxSender` here (the submit/confirm path and the
start-up reconcile). Errors and `is_transient` are in `tx_errors`.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys import keys as eth_keys
from pydantic import SecretStr
from web3 import AsyncWeb3
from web3.exceptions import Web3RPCError

from shared.backoff import backoff_delay
from shared.chain.errors import (
    ErrorDecoder,
    ErrorKind,
    InsufficientBalanceError,
    TxMinedRevertedError,
    classify_message,
)
from shared.chain.fees import FeePolicy, Fees, gas_limit, max_cost_wei
from shared.chain.nonces import Broadcast, plan_reconcile
from shared.chain.tx_errors import (
    NonceGapError,
    TxCancelledError,
    TxNonceConsumedError,
    TxTimeoutError,
    is_transient,
    maybe_delivered,
    nonce_error,
)
from shared.chain.tx_model import (
    PendingTx,
    ReconcileResult,
    SenderStats,
    hex_str,
    kind_of,
    nonce_ranges,
    rebroadcast_counter,
    sent_counter,
)
from shared.chain.tx_supervisor import LedgerSupervisor
from shared.telemetry import tracer

__all__ = [
    "NonceGapError",
    "PendingTx",
    "ReconcileResult",
    "SenderStats",
    "TxCancelledError",
    "TxNonceConsumedError",
    "TxSender",
    "TxTimeoutError",
    "is_transient",
]

log = logging.getLogger(__name__)
_tracer = tracer("perpex.tx")


class TxSender(LedgerSupervisor):
    gas_multiplier: float
    gas_headroom: int
    confirm_timeout_s: float

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
        stuck_after_s: float | None = None,
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
        self.stuck_after_s = (
            stuck_after_s if stuck_after_s is not None else max(60.0, 4 * replace_after_s)
        )
        self._nonce: int | None = None
        self._nonce_lock = asyncio.Lock()  # nonce, balance check, sign, broadcast: one at a time
        self._fee_cache: tuple[float, int, Fees] | None = None
        self._balance_at = 0.0
        self._mined_nonce: tuple[float, int] | None = None
        self._mined_lock = asyncio.Lock()
        self._balance_lock = asyncio.Lock()
        self._fee_lock = asyncio.Lock()
        self._refreshing: dict[str, asyncio.Task[None]] = {}
        self.pending: dict[int, PendingTx] = {}  # the nonce ledger
        self._unfillable: dict[int, str] = {}  # nonce -> why the node refuses to fill it
        self._supervisor: asyncio.Task[None] | None = None
        self._stuck_logged: tuple[str | None, float] = (None, 0.0)
        self.stats = SenderStats()
        self.last_balance_wei: int | None = None

    def __repr__(self) -> str:  # never the key
        return f"TxSender(address={self.address})"

    async def reconcile(self, wait_s: float) -> ReconcileResult:
        """At start (and before a fence): make the chain's nonces agree with the ledger before
        any new work. A previous run's transactions the node can mine are waited for, up to
        `wait_s`; every other nonce from the mined one up to the highest the node or the
        ledger knows that the ledger does not drive (a gap, and what queues behind it; the
        previous run's leftovers still unmined after the wait) gets a cancellation."""
        latest = await self._count("latest")
        pending = await self._count("pending")
        pool = await self.pool_nonces()
        plan = plan_reconcile(latest, pending, pool, self.pending.keys(), self._nonce)
        waited = len(plan.wait)
        if plan.wait:
            log.warning(
                "%d transactions of a previous run are pending (nonces %d-%d); waiting up to "
                "%.0fs for them before sending anything",
                len(plan.wait),
                plan.wait[0],
                plan.wait[-1],
                wait_s,
            )
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                latest = await self._count("latest")
                if latest > plan.wait[-1]:
                    break
                await asyncio.sleep(self.poll_s)
            pending = await self._count("pending")
            pool = await self.pool_nonces()
            plan = plan_reconcile(latest, pending, pool, self.pending.keys(), self._nonce)
            if plan.wait:
                log.warning(
                    "%d transactions of a previous run still not mined after %.0fs: cancelling "
                    "them",
                    len(plan.wait),
                    wait_s,
                )
        cancel = (*plan.wait, *plan.cancel)
        if cancel:
            log.warning(
                "nonce gap: the chain's mined nonce is %d and the node holds transactions up to "
                "nonce %d this run does not drive; cancelling %d nonce(s) (%s) so nothing "
                "queues behind a gap or mines stale",
                latest,
                cancel[-1],
                len(cancel),
                nonce_ranges(cancel),
            )
            base_fee, fresh = await self.current_fees(fresh=True)
            async with self._nonce_lock:
                # Highest first: what queues behind the gap is replaced before the gap is
                # filled, or filling it first would let the stale queue mine at once.
                for n in sorted(cancel, reverse=True):
                    if n in self.pending:
                        continue
                    known = (pool or {}).get(n)
                    fees = self._outbid(known, base_fee, fresh)
                    await self._start_cancel(n, fees, f"cancel:{n}")
                self._nonce = max(self._nonce or 0, plan.next_nonce)
        else:
            async with self._nonce_lock:
                self._nonce = max(self._nonce or 0, plan.next_nonce)
        self._ensure_supervisor()
        return ReconcileResult(waited, len(cancel))

    async def wait_for_in_flight(self, timeout_s: float = 60.0) -> int:
        """Reconcile (see `reconcile`), then wait up to `timeout_s` in all until nothing this
        wallet sent is in flight. Returns how many transactions were found in flight."""
        deadline = time.monotonic() + timeout_s
        result = await self.reconcile(timeout_s)
        tracked = len(self.pending)
        await self.wait_pending(max(0.0, deadline - time.monotonic()))
        if self.pending:
            log.warning("%d transactions of this wallet are still pending", len(self.pending))
        return max(result.found, tracked)

    async def send(self, tx: dict[str, Any], label: str = "tx") -> dict[str, Any]:
        """Simulate, send and confirm `tx` (to/data/value). Returns the receipt."""
        pending = await self.submit(tx, label)
        return await self.finish(pending)

    async def submit(
        self, tx: dict[str, Any], label: str = "tx", estimated_gas: int | None = None
    ) -> PendingTx:
        """Simulate and broadcast `tx` (retrying transient failures); returns it tracked in
        the ledger. Raises TxRevertedError when the simulation reverts (nothing is sent),
        NonceGapError when a nonce below cannot be filled (nothing is sent). A caller that has
        just simulated and estimated `tx` itself passes `estimated_gas` (eth_estimateGas's
        answer, before GAS_MULTIPLIER): it is not estimated again."""
        with _tracer.start_as_current_span("tx.send", attributes={"tx.label": label}) as span:
            async for attempt in self._retrying(nonce_error):  # nonce used by someone else
                with attempt:
                    pending = await self._broadcast(tx, label, estimated_gas)
            span.set_attribute("tx.nonce", pending.nonce)
            span.set_attribute("tx.hash", pending.hashes[-1])
        return pending

    async def finish(self, pending: PendingTx) -> dict[str, Any]:
        """Wait for a submitted transaction's outcome (the ledger replaces it while stuck).
        Returns the receipt; raises TxMinedRevertedError when it was mined but reverted (gas
        was spent), TxTimeoutError after CONFIRM_TIMEOUT_S (it stays tracked: call again),
        TxNonceConsumedError / TxCancelledError when its nonce was filled otherwise."""
        label = pending.label
        with _tracer.start_as_current_span("tx.confirm", attributes={"tx.label": label}) as span:
            receipt = await self.confirm(pending)
            span.set_attribute("tx.hash", hex_str(receipt["transactionHash"]))
            span.set_attribute("tx.gas_used", int(receipt["gasUsed"]))
            span.set_attribute("tx.replacements", len(pending.hashes) - 1)
        if int(receipt["status"]) != 1:
            self.stats.reverted += 1
            raise TxMinedRevertedError(
                f"{label} mined but reverted (tx {hex_str(receipt['transactionHash'])})",
                tx_hash=hex_str(receipt["transactionHash"]),
                gas_used=int(receipt["gasUsed"]),
                block_number=int(receipt["blockNumber"]),
            )
        self.stats.confirmed += 1
        return dict(receipt)

    async def confirm(self, pending: PendingTx) -> Any:
        """The receipt of whichever of the transaction's versions was mined, as the ledger's
        supervisor finds it; TxTimeoutError after CONFIRM_TIMEOUT_S (still tracked)."""
        if not pending.done.is_set():
            self.track(pending)
            try:
                await asyncio.wait_for(pending.done.wait(), self.confirm_timeout_s)
            except TimeoutError:
                raise TxTimeoutError(
                    f"{pending.label} nonce {pending.nonce} not mined after "
                    f"{self.confirm_timeout_s:.0f}s"
                ) from None
        if pending.error is not None:
            raise pending.error
        return pending.receipt

    async def _broadcast(
        self, tx: dict[str, Any], label: str, estimated_gas: int | None = None
    ) -> PendingTx:
        """Simulate, estimate, check the balance; then, under the nonce lock (local work only),
        take the next nonce, sign and track the transaction; then deliver it outside the lock,
        so a slow or lost answer never holds up the other sends."""
        if self._unfillable:
            raise NonceGapError(self.stuck() or "nonce gap")
        # The simulation: a revert (with its decoded reason) sends nothing.
        estimate = estimated_gas if estimated_gas is not None else await self.estimate(tx)
        gas = gas_limit(estimate, self.gas_multiplier) + self.gas_headroom
        _, fees = await self.current_fees()
        cost = max_cost_wei(gas, fees, int(tx.get("value", 0)))
        balance, stale = await self._cached_balance()
        if stale and balance - self.reserved_wei() < cost:
            async with self._balance_lock:  # never refuse on an old value: read it again
                if not self._balance_fresh():
                    await self.balance()
                assert self.last_balance_wei is not None
                balance = self.last_balance_wei
        async with self._nonce_lock:
            if self._unfillable:
                raise NonceGapError(self.stuck() or "nonce gap")
            reserved = self.reserved_wei()
            if balance - reserved < cost:
                raise InsufficientBalanceError(
                    f"wallet {self.address} holds {balance} wei ({reserved} reserved by pending "
                    f"transactions); {label} may cost up to {cost} wei"
                )
            nonce = await self._current_nonce()
            pending = PendingTx(
                label=label,
                nonce=nonce,
                gas=gas,
                fees=fees,
                tx=dict(tx),
                broadcast=Broadcast.UNKNOWN,
            )
            signed = self._sign(pending)
            pending.raw = bytes(signed.raw_transaction)
            pending.hashes.append(hex_str(signed.hash))
            pending.checked_at = time.monotonic()
            # The nonce is taken now: from here on the ledger sees it through.
            self._nonce = nonce + 1
            self.pending[nonce] = pending
        self._ensure_supervisor()
        try:
            await self._deliver(pending)  # raises only for a transaction the node surely lacks
        except Web3RPCError as exc:
            if nonce_error(exc) and await self._count("latest") > nonce:
                # Someone else used the wallet at this nonce: ours was never sent. Resync and
                # let submit() take the next nonce.
                self.stats.consumed += 1
                self._settle(pending, error=TxNonceConsumedError(str(exc)))
                async with self._nonce_lock:
                    self._nonce = self._after_ledger(await self._count("pending"))
                raise
            if nonce_error(exc) or is_transient(exc):
                return pending  # tracked: the supervisor delivers it
            await self._give_up(pending, f"{type(exc).__name__}: {exc}")
            raise
        except InsufficientBalanceError as exc:
            await self._give_up(pending, str(exc))
            raise
        return pending

    async def _deliver(self, pending: PendingTx) -> None:
        """The first broadcast of a tracked transaction. Its signed bytes are sent again (the
        same bytes: never a second transaction) while the attempt fails transiently - a lost
        answer included, as the node answers "already known" if it got it - up to MAX_RETRIES
        times, quickly; then it is left UNKNOWN for the supervisor. Raises on a definite
        refusal of a transaction the node surely does not hold."""
        assert pending.raw is not None
        maybe_out = False  # an attempt may have reached the node
        attempt = 0
        while True:
            try:
                await self.w3.eth.send_raw_transaction(pending.raw)
                break
            except Web3RPCError as exc:
                kind = classify_message(str(exc))
                if kind == ErrorKind.ALREADY_KNOWN:
                    break
                if kind == ErrorKind.UNDERPRICED:
                    # the node holds another transaction at this nonce, or the base fee rose
                    # above our max fee: the supervisor bumps it at its next poll
                    pending.sent_at = float("-inf")
                    log.warning("%s nonce=%d: %s; bumping it", pending.label, pending.nonce, exc)
                    return
                if maybe_out and not is_transient(exc):
                    return  # e.g. "nonce too low": our earlier attempt was mined
                if kind == ErrorKind.INSUFFICIENT_FUNDS:
                    raise InsufficientBalanceError(
                        f"node rejected {pending.label}: insufficient funds"
                    ) from None
                if not is_transient(exc):
                    raise
            except Exception as exc:
                if not is_transient(exc):
                    raise
                if maybe_delivered(exc) and not maybe_out:
                    maybe_out = True
                    self.stats.sent += 1  # out, as far as anyone knows
                    sent_counter.add(1, kind_of(pending))
                    log.warning(
                        "%s nonce=%d: no answer to the broadcast (%s: %s); sending the same "
                        "bytes again until the node knows %s",
                        pending.label,
                        pending.nonce,
                        type(exc).__name__,
                        exc,
                        pending.hashes[-1],
                    )
            attempt += 1
            if attempt > self.max_retries:
                return  # still tracked (UNKNOWN): the supervisor goes on
            await asyncio.sleep(backoff_delay(attempt, self.poll_s, 1.0))
        pending.broadcast = Broadcast.SENT
        pending.sent_at = time.monotonic()
        if maybe_out:
            self.stats.rebroadcast += 1
            rebroadcast_counter.add(1, kind_of(pending))
            return
        self.stats.sent += 1
        sent_counter.add(1, kind_of(pending))
        log.info(
            "sent %s nonce=%d hash=%s maxFee=%d",
            pending.label,
            pending.nonce,
            pending.hashes[-1],
            pending.fees.max_fee_per_gas,
        )
