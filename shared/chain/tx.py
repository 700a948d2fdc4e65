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
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import aiohttp
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_keys import keys as eth_keys
from eth_typing import ChecksumAddress
from pydantic import SecretStr
from tenacity import AsyncRetrying, retry_if_exception, stop_after_attempt, wait_exponential_jitter
from web3 import AsyncWeb3
from web3.exceptions import (
    BadResponseFormat,
    ContractLogicError,
    TransactionNotFound,
    Web3RPCError,
)

from shared.chain.errors import (
    ErrorDecoder,
    ErrorKind,
    InsufficientBalanceError,
    TxMinedRevertedError,
    TxRevertedError,
    classify_message,
)
from shared.chain.fees import FeeCapExceeded, FeePolicy, Fees, gas_limit, max_cost_wei
from shared.chain.nonces import (
    Broadcast,
    Step,
    entry_step,
    holes,
    plan_reconcile,
    recheck_delay,
    stuck_reason,
)
from shared.telemetry import meter, tracer

log = logging.getLogger(__name__)
_tracer = tracer("perpex.tx")
_meter = meter("perpex.tx")
_sent_counter = _meter.create_counter("perpex_tx_sent", description="transactions broadcast")
_replaced_counter = _meter.create_counter(
    "perpex_tx_replaced", description="fee-bumped replacements"
)
_rebroadcast_counter = _meter.create_counter(
    "perpex_tx_rebroadcast",
    description="broadcasts whose answer was lost, sent again (same bytes) as the node lacked them",
)
_cancelled_counter = _meter.create_counter(
    "perpex_tx_cancelled", description="nonces filled with a zero-value self-transfer"
)

T = TypeVar("T")
CANCEL_GAS = 21_000


class TxTimeoutError(RuntimeError):
    """Not mined within CONFIRM_TIMEOUT_S. The transaction stays tracked (and replaced)."""


class TxNonceConsumedError(RuntimeError):
    """The nonce of a pending transaction was used by a transaction we did not send (the wallet
    is shared with another process): none of our hashes will ever be mined."""


class TxCancelledError(RuntimeError):
    """The transaction's nonce was filled by a cancellation (the node refused its own bytes)."""


class NonceGapError(RuntimeError):
    """A nonce below the next one cannot be filled: new work would only queue behind it."""


_TRANSIENT_NAMES = frozenset(
    {
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ClientOSError",
        "ClientPayloadError",
        "ServerTimeoutError",
        "HTTPError",
        "ConnectError",
        "ReadError",
        "RemoteProtocolError",
        "KafkaConnectionError",
    }
)


def is_transient(exc: BaseException) -> bool:
    """A failure that may pass if the same request is made again: timeouts, dropped or refused
    connections, HTTP 408/425/429/5xx, a body cut short (not JSON), a transient JSON-RPC error."""
    if isinstance(
        exc,
        (
            TxRevertedError,
            InsufficientBalanceError,
            TxTimeoutError,
            TxNonceConsumedError,
            TxCancelledError,
            NonceGapError,
        ),
    ):
        return False
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status in (408, 425, 429) or exc.status >= 500
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return True
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError, OSError)):
        return True
    if isinstance(exc, (json.JSONDecodeError, BadResponseFormat)):
        return True  # an answer cut short
    if isinstance(exc, Web3RPCError):
        return classify_message(str(exc)) == ErrorKind.TRANSIENT
    name = type(exc).__name__
    return name in _TRANSIENT_NAMES or "Timeout" in name


_NOT_CONNECTED = ("ClientConnectorError", "ConnectError", "ConnectTimeout")


def _maybe_delivered(exc: BaseException) -> bool:
    """A transient failure after the request may have reached the node (not a refused or
    failed connection, not a JSON-RPC error answer)."""
    if isinstance(exc, ConnectionRefusedError) or type(exc).__name__ in _NOT_CONNECTED:
        return False
    return not isinstance(exc, Web3RPCError) and is_transient(exc)


def _nonce_error(exc: BaseException) -> bool:
    return isinstance(exc, Web3RPCError) and classify_message(str(exc)) == ErrorKind.NONCE


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

    @property
    def address(self) -> ChecksumAddress:
        return self._account.address

    # ---- RPC with retries ----
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

    # ---- nonce ----
    async def sync_nonce(self) -> int:
        async with self._nonce_lock:
            self._nonce = self._after_ledger(await self._count("pending"))
            return self._nonce

    def _after_ledger(self, node_pending: int) -> int:
        """The next nonce: the node's pending nonce, or past everything the ledger tracks."""
        return max([node_pending, *(n + 1 for n in self.pending)])

    async def _current_nonce(self) -> int:
        """The next nonce to use (caller holds _nonce_lock)."""
        if self._nonce is None:
            self._nonce = self._after_ledger(await self._count("pending"))
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
                        found[int(nonce)] = _fees_of(tx)
            return found
        return None

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
                _ranges(cancel),
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

    # ---- balance ----
    def reserved_wei(self) -> int:
        """Worst-case cost of every transaction tracked and not yet mined."""
        return sum(
            max_cost_wei(p.gas, p.fees, int(p.tx.get("value", 0))) for p in self.pending.values()
        )

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

    # ---- building blocks ----
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
            return TxRevertedError(self.decoder.decode(_revert_data(exc)), _revert_data(exc))
        if classify_message(str(exc)) == ErrorKind.REVERT:
            data = _rpc_error_data(exc)
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

    # ---- the full path ----
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
            async for attempt in self._retrying(_nonce_error):  # nonce used by someone else
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
            span.set_attribute("tx.hash", _hex(receipt["transactionHash"]))
            span.set_attribute("tx.gas_used", int(receipt["gasUsed"]))
            span.set_attribute("tx.replacements", len(pending.hashes) - 1)
        if int(receipt["status"]) != 1:
            self.stats.reverted += 1
            raise TxMinedRevertedError(
                f"{label} mined but reverted (tx {_hex(receipt['transactionHash'])})",
                tx_hash=_hex(receipt["transactionHash"]),
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

    def is_resolved(self, pending: PendingTx) -> bool:
        """Mined, cancelled or consumed: its nonce holds nothing of ours any more."""
        return pending.done.is_set()

    def track(self, pending: PendingTx) -> None:
        """Keep `pending` in the ledger (it is already unless resolved): kept for callers that
        re-track after a TxTimeoutError."""
        if not pending.done.is_set() and self.pending.get(pending.nonce) is not pending:
            self.pending.setdefault(pending.nonce, pending)
        self._ensure_supervisor()

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
            pending.hashes.append(_hex(signed.hash))
            pending.checked_at = time.monotonic()
            # The nonce is taken now: from here on the ledger sees it through.
            self._nonce = nonce + 1
            self.pending[nonce] = pending
        self._ensure_supervisor()
        try:
            await self._deliver(pending)  # raises only for a transaction the node surely lacks
        except Web3RPCError as exc:
            if _nonce_error(exc) and await self._count("latest") > nonce:
                # Someone else used the wallet at this nonce: ours was never sent. Resync and
                # let submit() take the next nonce.
                self.stats.consumed += 1
                self._settle(pending, error=TxNonceConsumedError(str(exc)))
                async with self._nonce_lock:
                    self._nonce = self._after_ledger(await self._count("pending"))
                raise
            if _nonce_error(exc) or is_transient(exc):
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
                if _maybe_delivered(exc) and not maybe_out:
                    maybe_out = True
                    self.stats.sent += 1  # out, as far as anyone knows
                    _sent_counter.add(1, {"label": pending.label})
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
            await asyncio.sleep(min(1.0, self.poll_s * 2 ** (attempt - 1)))
        pending.broadcast = Broadcast.SENT
        pending.sent_at = time.monotonic()
        if maybe_out:
            self.stats.rebroadcast += 1
            _rebroadcast_counter.add(1, {"label": pending.label})
            return
        self.stats.sent += 1
        _sent_counter.add(1, {"label": pending.label})
        log.info(
            "sent %s nonce=%d hash=%s maxFee=%d",
            pending.label,
            pending.nonce,
            pending.hashes[-1],
            pending.fees.max_fee_per_gas,
        )

    async def _give_up(self, pending: PendingTx, why: str) -> None:
        """The node refuses the work for good after its nonce was taken. The last nonce handed
        out is simply handed back; an earlier one (others were sent after it) is filled with a
        cancellation, so nothing queues behind it."""
        async with self._nonce_lock:
            if self._nonce == pending.nonce + 1 and self.pending.get(pending.nonce) is pending:
                del self.pending[pending.nonce]
                self._nonce = pending.nonce
                pending.error = RuntimeError(why)
                pending.done.set()
                return
        await self._cancel_instead(pending, why)

    def _sign(self, pending: PendingTx) -> Any:
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
        return Account.sign_transaction(full, self._signing_key)

    async def _send_signed(self, pending: PendingTx) -> str:
        """Sign `pending` as it is now and broadcast it once. An answer lost after the request
        may have reached the node leaves it tracked as UNKNOWN (the supervisor asks the node
        and sends the same bytes again); a definite refusal raises."""
        signed = self._sign(pending)
        state = Broadcast.SENT
        try:
            tx_hash = _hex(await self.w3.eth.send_raw_transaction(signed.raw_transaction))
        except Web3RPCError as exc:
            kind = classify_message(str(exc))
            if kind == ErrorKind.ALREADY_KNOWN:
                tx_hash = _hex(signed.hash)
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
            # connection). Track it: the nonce is taken, and the supervisor asks the node for
            # it and sends these same bytes again if it lacks them. Sending a fresh one now
            # instead could leave an untracked twin holding the nonce.
            tx_hash = _hex(signed.hash)
            state = Broadcast.UNKNOWN
            log.warning(
                "%s nonce=%d: no answer to the broadcast (%s: %s); tracking %s until the node "
                "knows it",
                pending.label,
                pending.nonce,
                type(exc).__name__,
                exc,
                tx_hash,
            )
        pending.hashes.append(tx_hash)
        pending.raw = bytes(signed.raw_transaction)
        pending.broadcast = state
        pending.checks = 0
        pending.checked_at = time.monotonic() if state is Broadcast.UNKNOWN else 0.0
        pending.sent_at = time.monotonic()
        if pending.kind == "cancel" or pending.cancelling:
            pending.cancel_hashes.add(tx_hash)
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

    # ---- cancellations ----
    def _outbid(self, known: Fees | None, base_fee: int, fresh: Fees) -> Fees:
        """Fees that replace a transaction the node holds with `known` fees (fresh ones when
        the node holds none or does not say)."""
        if known is None:
            return fresh
        try:
            bumped = self.fees.bump(known, base_fee)
        except FeeCapExceeded:
            return fresh
        return Fees(
            max(bumped.max_fee_per_gas, fresh.max_fee_per_gas),
            max(bumped.max_priority_fee_per_gas, fresh.max_priority_fee_per_gas),
        )

    async def _start_cancel(self, nonce: int, fees: Fees, label: str) -> PendingTx:
        """Track a cancellation at `nonce` and broadcast it once (caller holds _nonce_lock);
        the supervisor drives it from there (re-sends, bumps) until the nonce is used."""
        pending = PendingTx(
            label=label,
            nonce=nonce,
            gas=CANCEL_GAS,
            fees=fees,
            tx={"to": self.address, "value": 0},
            kind="cancel",
            broadcast=Broadcast.UNKNOWN,
        )
        self.pending[nonce] = pending
        self.stats.cancelled += 1
        _cancelled_counter.add(1)
        await self._try_send(pending)
        return pending

    async def _cancel_instead(self, pending: PendingTx, why: str) -> None:
        """The node refuses `pending`'s own bytes: fill its nonce with a cancellation."""
        if pending.kind == "cancel" or pending.cancelling:
            await self._try_send(pending)  # already a cancellation: send it again
            return
        log.warning(
            "%s nonce=%d: the node refuses it (%s); cancelling the nonce instead",
            pending.label,
            pending.nonce,
            why,
        )
        base_fee, fresh = await self.current_fees(fresh=True)
        pending.tx = {"to": self.address, "value": 0}
        pending.gas = CANCEL_GAS
        pending.fees = self._outbid(pending.fees, base_fee, fresh)
        pending.cancelling = True
        self.stats.cancelled += 1
        _cancelled_counter.add(1)
        await self._try_send(pending)

    async def _try_send(self, pending: PendingTx) -> None:
        """Broadcast `pending` as it is now; failures leave it tracked for the supervisor."""
        try:
            await self._send_signed(pending)
        except Exception as exc:
            self._refused(pending, exc)
        else:
            self._unfillable.pop(pending.nonce, None)

    def _refused(self, pending: PendingTx, exc: BaseException) -> None:
        """A broadcast of `pending` failed: decide what the supervisor does next."""
        pending.broadcast = Broadcast.UNKNOWN
        pending.checked_at = time.monotonic()
        if pending.raw is None:  # never signed for the node: sign now so it can be re-sent
            signed = self._sign(pending)
            pending.raw = bytes(signed.raw_transaction)
            pending.hashes.append(_hex(signed.hash))
            if pending.kind == "cancel" or pending.cancelling:
                pending.cancel_hashes.add(pending.hashes[-1])
        kind = classify_message(str(exc)) if isinstance(exc, Web3RPCError) else None
        if kind in (ErrorKind.UNDERPRICED, ErrorKind.ALREADY_KNOWN):
            # The node holds another transaction at this nonce (or wants more than the base
            # fee): bump at the next poll.
            pending.sent_at = float("-inf")
            return
        if kind == ErrorKind.NONCE:
            return  # used meanwhile: resolved by its receipt
        if is_transient(exc):
            log.debug("%s nonce=%d: broadcast failed (%s)", pending.label, pending.nonce, exc)
            return
        why = ("insufficient funds" if isinstance(exc, InsufficientBalanceError) else str(exc))[
            :200
        ]
        if self._unfillable.get(pending.nonce) != why:  # logged once per reason
            log.error(
                "%s nonce=%d: the node refuses it (%s); retrying, and sending nothing new "
                "meanwhile",
                pending.label,
                pending.nonce,
                why,
            )
        self._unfillable[pending.nonce] = why

    # ---- the ledger's supervisor ----
    def _ensure_supervisor(self) -> None:
        if self.pending and (self._supervisor is None or self._supervisor.done()):
            self._supervisor = asyncio.create_task(
                self._supervise(), name=f"tx-ledger-{self.address[:10]}"
            )

    async def _supervise(self) -> None:
        failures = 0
        while self.pending:
            try:
                await self._tick()
                failures = 0
                delay = self.poll_s
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                delay = min(self.backoff_max_s, self.poll_s * 2 ** min(failures, 8))
                log.log(
                    logging.WARNING if is_transient(exc) else logging.ERROR,
                    "transaction ledger: %s: %s; again in %.2fs (%d tracked)",
                    type(exc).__name__,
                    exc,
                    delay,
                    len(self.pending),
                    exc_info=not is_transient(exc),
                )
            self._log_stuck()
            if not self.pending:
                break
            await asyncio.sleep(delay)

    async def _tick(self) -> None:
        mined = await self.mined_nonce()
        now = time.monotonic()
        entries = sorted(self.pending.values(), key=lambda p: p.nonce)
        used = [p for p in entries if p.nonce < mined]
        checks: list[PendingTx] = []
        replaces: list[PendingTx] = []
        for p in entries:
            step = entry_step(
                p.nonce,
                p.broadcast,
                mined,
                now,
                p.sent_at,
                p.checked_at,
                self.replace_after_s,
                recheck_delay(p.checks, self.poll_s),
            )
            if step is Step.CHECK_KNOWN:
                checks.append(p)
            elif step is Step.REPLACE:
                replaces.append(p)
        # Getting lost broadcasts to the node first (everything above them waits on them),
        # reading receipts alongside.
        await asyncio.gather(self._check_all(checks), _each(used, lambda p: self._resolve(p, now)))
        for n in holes(mined, list(self.pending)):
            async with self._nonce_lock:
                if n in self.pending:
                    continue
                base_fee, fresh = await self.current_fees(fresh=True)
                log.warning("nonce %d: nothing tracked holds it; cancelling it (a gap)", n)
                await self._start_cancel(n, self._outbid(None, base_fee, fresh), f"cancel:{n}")
        replaces = [p for p in replaces if self.pending.get(p.nonce) is p]
        if replaces:
            base_fee, _ = await self.current_fees(fresh=True)
            await _each(replaces, lambda p: self._replace(p, base_fee))

    async def _check_all(self, checks: list[PendingTx]) -> None:
        """Unknown broadcasts: this run's own work all at once; cancellations highest nonce
        first, one at a time (filling a lower nonce first could let a previous run's
        transaction queued above it mine before its cancellation is in)."""

        def cancelling(p: PendingTx) -> bool:
            return p.kind == "cancel" or p.cancelling

        work = [p for p in checks if not cancelling(p)]

        async def in_order() -> None:
            if not any(cancelling(p) for p in checks):
                return
            # every unknown cancellation, due or not, highest first; none below one the node
            # still lacks (what it would let through might be a stale transaction above)
            unknown = [
                p
                for p in self.pending.values()
                if cancelling(p) and p.broadcast is Broadcast.UNKNOWN
            ]
            for p in sorted(unknown, key=lambda p: p.nonce, reverse=True):
                await self._check_known(p)
                if p.broadcast is not Broadcast.SENT:
                    break

        await asyncio.gather(in_order(), _each(work, self._check_known))

    async def _resolve(self, pending: PendingTx, now: float) -> None:
        """The nonce is used: which of our versions (if any) was mined?"""
        for tx_hash in reversed(pending.hashes):
            try:
                receipt = await self._receipt(tx_hash)
            except Exception as exc:
                if is_transient(exc):
                    return  # asked again at the next poll
                raise
            if receipt is not None:
                if tx_hash in pending.cancel_hashes and pending.kind == "work":
                    self._settle(
                        pending,
                        error=TxCancelledError(
                            f"{pending.label}: nonce {pending.nonce} was filled by a cancellation"
                        ),
                    )
                else:
                    self._settle(pending, receipt=receipt)
                return
        # Used, yet none of our hashes has a receipt: a lagging node, or a transaction we did
        # not send took the nonce.
        pending.consumed_since = pending.consumed_since or now
        if now - pending.consumed_since > max(5.0, 20 * self.poll_s):
            self.stats.consumed += 1
            if pending.kind == "cancel":
                self._settle(pending, receipt=None)  # filled anyway: what the cancel was for
            else:
                self._settle(
                    pending,
                    error=TxNonceConsumedError(
                        f"{pending.label}: nonce {pending.nonce} was used by another transaction"
                    ),
                )

    def _settle(
        self, pending: PendingTx, receipt: Any = None, error: BaseException | None = None
    ) -> None:
        if self.pending.get(pending.nonce) is pending:
            del self.pending[pending.nonce]
        self._unfillable.pop(pending.nonce, None)
        pending.receipt = receipt
        pending.error = error
        pending.done.set()
        if pending.kind == "cancel":
            log.info("nonce %d filled (%s)", pending.nonce, pending.label)

    async def _receipt(self, tx_hash: str) -> Any:
        """One attempt (the supervisor asks again at its next poll)."""
        try:
            return await self.w3.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
        except TransactionNotFound:
            return None

    async def _check_known(self, pending: PendingTx) -> None:
        """An unknown broadcast: does the node hold it? If not, send the same bytes again."""
        pending.checks += 1
        pending.checked_at = time.monotonic()
        tx_hash = pending.hashes[-1] if pending.hashes else None
        if tx_hash is not None:
            try:  # one attempt: a failure is asked again at the next check
                known = await self.w3.eth.get_transaction(tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                known = None
            except Exception as exc:
                if is_transient(exc):
                    return
                raise
            if known is not None:
                pending.broadcast = Broadcast.SENT
                self._unfillable.pop(pending.nonce, None)
                return
        if pending.raw is None:
            pending.raw = bytes(self._sign(pending).raw_transaction)
        try:
            await self.w3.eth.send_raw_transaction(pending.raw)
        except Exception as exc:
            if isinstance(exc, Web3RPCError):
                kind = classify_message(str(exc))
                if kind == ErrorKind.ALREADY_KNOWN:
                    pending.broadcast = Broadcast.SENT
                    return
                if kind in (ErrorKind.NONCE, ErrorKind.UNDERPRICED) or is_transient(exc):
                    self._refused(pending, exc)
                    return
                await self._cancel_instead(pending, str(exc)[:200])
                return
            if isinstance(exc, InsufficientBalanceError) or not is_transient(exc):
                await self._cancel_instead(pending, f"{type(exc).__name__}: {exc}")
                return
            return  # lost again: asked again at the next check
        pending.broadcast = Broadcast.SENT
        self._unfillable.pop(pending.nonce, None)
        self.stats.rebroadcast += 1
        _rebroadcast_counter.add(1, {"label": pending.label})
        log.warning(
            "%s nonce=%d: the node did not have %s; sent the same transaction again",
            pending.label,
            pending.nonce,
            tx_hash,
        )

    async def _replace(self, pending: PendingTx, base_fee: int) -> None:
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
            pending.sent_at = time.monotonic()
            if kind == ErrorKind.NONCE:
                # The nonce is used: one of our hashes mined (the receipt shows up next poll).
                pending.fees = old
                return
            if kind == ErrorKind.UNDERPRICED:
                return  # try a higher bump next round
            pending.fees = old
            if not is_transient(exc):
                log.warning(
                    "could not replace %s nonce=%d (%s); still waiting for it",
                    pending.label,
                    pending.nonce,
                    exc,
                )
            return
        except InsufficientBalanceError as exc:
            pending.fees = old
            pending.sent_at = time.monotonic()
            log.warning(
                "could not replace %s nonce=%d (%s); still waiting for it",
                pending.label,
                pending.nonce,
                exc,
            )
            return
        except BaseException as exc:
            pending.fees = old  # not sent: what is out there still has the old fees
            if isinstance(exc, Exception) and is_transient(exc):
                log.debug("replacing %s nonce=%d failed: %s", pending.label, pending.nonce, exc)
                return
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

    # ---- state ----
    def stuck(self, now: float | None = None) -> str | None:
        """Why the sender cannot make progress (a nonce gap it cannot fill, a transaction not
        mined for `stuck_after_s`), or None."""
        return stuck_reason(
            [(p.nonce, p.label, p.created_at) for p in self.pending.values()],
            time.monotonic() if now is None else now,
            self.stuck_after_s,
            self._unfillable,
        )

    def oldest_pending_s(self) -> float:
        if not self.pending:
            return 0.0
        return time.monotonic() - min(p.created_at for p in self.pending.values())

    def _log_stuck(self) -> None:
        reason = self.stuck()
        last, at = self._stuck_logged
        now = time.monotonic()
        if reason is not None and (last is None or now - at >= 60.0):
            log.error("transaction sender stuck: %s", reason)
            self._stuck_logged = (reason, now)
        elif reason is None and last is not None:
            log.info("transaction sender no longer stuck")
            self._stuck_logged = (None, now)

    async def wait_pending(self, timeout_s: float) -> bool:
        """Wait up to `timeout_s` for tracked transactions to settle (shutdown)."""
        deadline = time.monotonic() + timeout_s
        self._ensure_supervisor()
        while self.pending and time.monotonic() < deadline:
            await asyncio.sleep(self.poll_s)
        return not self.pending

    async def close(self) -> None:
        """Stop the ledger's supervisor (what is tracked is left to the next run's reconcile)."""
        task, self._supervisor = self._supervisor, None
        if task is not None and not task.done():
            task.cancel()
            try:
                await task
            except (asyncio.CancelledError, Exception):
                pass


async def _each(items: Iterable[PendingTx], fn: Callable[[PendingTx], Awaitable[None]]) -> None:
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


def _fees_of(tx: Any) -> Fees | None:
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


def _ranges(nonces: Iterable[int]) -> str:
    out: list[str] = []
    for n in sorted(nonces):
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


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
