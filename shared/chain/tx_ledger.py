"""The nonce ledger's entries and the primitives on them: the next nonce, signing, one
broadcast, cancellations (a zero-value self-transfer at a nonce), settling an entry, and why
the sender is stuck. The second layer of `TxSender` (shared/chain/tx.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from eth_account import Account
from eth_keys.datatypes import PrivateKey
from web3.exceptions import Web3RPCError

from shared.chain.errors import ErrorKind, InsufficientBalanceError, classify_message
from shared.chain.fees import FeeCapExceeded, Fees, max_cost_wei
from shared.chain.nonces import Broadcast, stuck_reason
from shared.chain.tx_errors import is_transient, maybe_delivered
from shared.chain.tx_model import (
    CANCEL_GAS,
    PendingTx,
    SenderStats,
    cancelled_counter,
    hex_str,
    sent_counter,
)
from shared.chain.tx_reads import WalletReads

log = logging.getLogger("shared.chain.tx")


class TxLedger(WalletReads):
    chain_id: int
    stuck_after_s: float
    stats: SenderStats
    pending: dict[int, PendingTx]  # the nonce ledger
    _signing_key: PrivateKey
    _nonce: int | None
    _nonce_lock: asyncio.Lock
    _unfillable: dict[int, str]  # nonce -> why the node refuses to fill it
    _stuck_logged: tuple[str | None, float]

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

    def reserved_wei(self) -> int:
        """Worst-case cost of every transaction tracked and not yet mined."""
        return sum(
            max_cost_wei(p.gas, p.fees, int(p.tx.get("value", 0))) for p in self.pending.values()
        )

    def is_resolved(self, pending: PendingTx) -> bool:
        """Mined, cancelled or consumed: its nonce holds nothing of ours any more."""
        return pending.done.is_set()

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
            tx_hash = hex_str(await self.w3.eth.send_raw_transaction(signed.raw_transaction))
        except Web3RPCError as exc:
            kind = classify_message(str(exc))
            if kind == ErrorKind.ALREADY_KNOWN:
                tx_hash = hex_str(signed.hash)
            elif kind == ErrorKind.INSUFFICIENT_FUNDS:
                raise InsufficientBalanceError(
                    f"node rejected {pending.label}: insufficient funds"
                ) from None
            else:
                raise
        except Exception as exc:
            if not maybe_delivered(exc):
                raise
            # The node may have the transaction (an answer lost to a timeout or a dropped
            # connection). Track it: the nonce is taken, and the supervisor asks the node for
            # it and sends these same bytes again if it lacks them. Sending a fresh one now
            # instead could leave an untracked twin holding the nonce.
            tx_hash = hex_str(signed.hash)
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
        sent_counter.add(1, {"label": pending.label})
        log.info(
            "sent %s nonce=%d hash=%s maxFee=%d",
            pending.label,
            pending.nonce,
            tx_hash,
            pending.fees.max_fee_per_gas,
        )
        return tx_hash

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
        cancelled_counter.add(1)
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
        cancelled_counter.add(1)
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
            pending.hashes.append(hex_str(signed.hash))
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
