"""The ledger's supervisor: one task per sender that, once per poll, resolves the nonces the
chain has used, gets lost broadcasts to the node (the same signed bytes), fills holes with
cancellations and replaces what is not mined in time. The third layer of `TxSender`
(shared/chain/tx.py)."""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from web3.exceptions import TransactionNotFound, Web3RPCError

from shared.chain.errors import ErrorKind, InsufficientBalanceError, classify_message
from shared.chain.fees import FeeCapExceeded
from shared.chain.nonces import Broadcast, Step, entry_step, holes, recheck_delay
from shared.chain.tx_errors import TxCancelledError, TxNonceConsumedError, is_transient
from shared.chain.tx_ledger import TxLedger
from shared.chain.tx_model import PendingTx, each_pending, rebroadcast_counter, replaced_counter

log = logging.getLogger("shared.chain.tx")


class LedgerSupervisor(TxLedger):
    replace_after_s: float
    _supervisor: asyncio.Task[None] | None

    def track(self, pending: PendingTx) -> None:
        """Keep `pending` in the ledger (it is already unless resolved): kept for callers that
        re-track after a TxTimeoutError."""
        if not pending.done.is_set() and self.pending.get(pending.nonce) is not pending:
            self.pending.setdefault(pending.nonce, pending)
        self._ensure_supervisor()

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
        await asyncio.gather(
            self._check_all(checks), each_pending(used, lambda p: self._resolve(p, now))
        )
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
            await each_pending(replaces, lambda p: self._replace(p, base_fee))

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

        await asyncio.gather(in_order(), each_pending(work, self._check_known))

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
        rebroadcast_counter.add(1, {"label": pending.label})
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
        replaced_counter.add(1, {"label": pending.label})
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
