"""Liquidation executor: one task per position, never two for the same token id.

Each liquidation: simulate and estimate gas (one eth_estimateGas on the latest state) x
GAS_MULTIPLIER -> EIP-1559 fees -> balance check -> nonce -> broadcast (TxSender.submit,
retried with backoff on transient errors; with a PreSend the estimate is its own), then wait
for the receipt, replacing the transaction with a bumped fee while it is stuck
(TxSender.finish). At most LIQUIDATION_CONCURRENCY liquidations are being simulated/broadcast
at once (fewer in the send window, below), and at most MAX_PENDING_TXS wait for their receipts;
confirmation does not hold a broadcast slot, so hundreds of liquidations fit in one block.
Tasks are started in rank order and the semaphores wake waiters first-in first-out, so the
most underwater positions are sent first.

A token stays in flight (no second liquidation of it is ever started) from its simulation
until its transaction's nonce is resolved by the sender's ledger: mined (successfully or
reverted), or filled otherwise (cancelled, used by another process). Not mined within
CONFIRM_TIMEOUT_S, or a failure while waiting, does not end it: the transaction still holds its
nonce and the ledger keeps replacing it, so the executor waits again.

With a PreSend (presend.py), each liquidation is first estimated on the latest block, then
simulated on the pending block just before it is signed, and priced: a revert there (another
keeper got there first: a lost race) or an unprofitable one sends nothing; the estimate is
handed to TxSender, which does not estimate again. From the pending-block call to the
broadcast a liquidation holds a place in the send window (window.py): one place while the
keeper is contested (it lost a race recently), otherwise from sqrt(backlog / 8) one wider per
round trip up to LIQUIDATION_CONCURRENCY, so two keepers rarely simulate the same position
while neither has broadcast it.

Outcomes go back to the keeper through callbacks: `liquidated` (mined; the liquidation may have
been partial, so the keeper's next round decides from the chain whether to liquidate again),
`dropped` (the position is gone: the simulation said PositionNotFound), and `retry` (check
again at the next block: the simulation said NotLiquidatable or found no room in the vAMM, the
liquidation does not pay its gas, the balance was short, a nonce gap blocks sending, retries ran
out, our transaction was mined but reverted...). Lost races (races.py) are counted
(`perpex_keeper_lost_races{reason,stage}`), as are unprofitable skips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from opentelemetry.trace import SpanKind, Status, StatusCode

from services.keeper.chain import ChainReader
from services.keeper.metrics import KeeperMetrics
from services.keeper.presend import PreSend, Skip
from services.keeper.races import MINED_REVERTED, RevertAction, RevertClass, classify_revert
from services.keeper.window import SendWindow
from shared.backoff import backoff_delay
from shared.chain.errors import InsufficientBalanceError, TxMinedRevertedError, TxRevertedError
from shared.chain.hexstr import hex_str
from shared.chain.tx import (
    NonceGapError,
    TxCancelledError,
    TxNonceConsumedError,
    TxSender,
    TxTimeoutError,
)
from shared.telemetry import context_from_carrier, tracer

log = logging.getLogger(__name__)
_tracer = tracer("perpex.keeper")


@dataclass
class Job:
    token_id: int
    market_id: str
    margin: int
    maintenance: int
    block: int
    trace: dict[str, str] | None
    size: int = 0  # base size and index price at `block` (the reward's fallback pricing)
    index_price: int = 0
    reward: int | None = None  # what the pending-block simulation said it earns
    state: str = "queued"  # queued -> sending -> sent -> done
    task: asyncio.Task[None] | None = field(default=None, repr=False)


@dataclass
class Callbacks:
    liquidated: Callable[[int, dict[str, Any]], None]
    dropped: Callable[[int, str], None]
    retry: Callable[[int, str], None]


class Executor:
    def __init__(
        self,
        sender: TxSender,
        chain: ChainReader,
        callbacks: Callbacks,
        metrics: KeeperMetrics | None = None,
        concurrency: int = 32,
        max_pending: int = 1000,
        presend: PreSend | None = None,
        window: SendWindow | None = None,
    ):
        self.sender = sender
        self.chain = chain
        self.cb = callbacks
        self.metrics = metrics
        self.presend = presend
        self.window = window or SendWindow(concurrency)
        self._send_slots = asyncio.Semaphore(concurrency)
        self._pending_slots = asyncio.Semaphore(max_pending)
        self.jobs: dict[int, Job] = {}
        self.closing = False
        self.stats = {
            "sent": 0,
            "confirmed": 0,
            "dropped": 0,
            "mined_reverted": 0,
            "retry": 0,
            "lost_races": 0,
            "unprofitable": 0,
            "reward_wad": 0,  # expected reward of the mined ones (collateral, WAD)
        }
        self._last_funds_warning = 0.0
        self.first_sent_at: float | None = None  # time.monotonic() of broadcasts
        self.last_sent_at: float | None = None

    def in_flight(self, token_id: int) -> bool:
        return token_id in self.jobs

    @property
    def pending_count(self) -> int:
        return sum(1 for j in self.jobs.values() if j.state == "sent")

    @property
    def to_send(self) -> int:
        """Liquidations started and not broadcast yet."""
        return sum(1 for j in self.jobs.values() if j.state in ("queued", "sending"))

    def liquidate(
        self,
        token_id: int,
        market_id: str,
        margin: int,
        maintenance: int,
        block: int,
        trace: dict[str, str] | None,
        size: int = 0,
        index_price: int = 0,
    ) -> bool:
        """Start liquidating `token_id` unless one is already in flight (or shutting down)."""
        if self.closing or token_id in self.jobs:
            return False
        job = Job(token_id, market_id, margin, maintenance, block, trace, size, index_price)
        self.jobs[token_id] = job
        job.task = asyncio.create_task(self._run(job), name=f"liquidate-{token_id}")
        return True

    async def _run(self, job: Job) -> None:
        ctx = context_from_carrier(job.trace) if job.trace else None
        attrs: dict[str, Any] = {
            "perpex.token_id": job.token_id,
            "perpex.market_id": job.market_id,
            "perpex.margin": str(job.margin),
            "perpex.maintenance_margin": str(job.maintenance),
            "perpex.block": job.block,
        }
        try:
            with _tracer.start_as_current_span(
                "keeper liquidate", context=ctx, kind=SpanKind.PRODUCER, attributes=attrs
            ) as span:
                outcome = await self._liquidate(job)
                span.set_attribute("perpex.outcome", outcome)
                if outcome not in ("confirmed", "dropped"):
                    span.set_status(Status(StatusCode.ERROR, outcome))
        except asyncio.CancelledError:
            if job.state in ("queued",):
                log.info("liquidation of %d cancelled before sending", job.token_id)
            raise
        except Exception:  # never let one position kill the keeper
            log.exception("liquidation of %d failed", job.token_id)
            self.cb.retry(job.token_id, "error")
        finally:
            job.state = "done"
            self.jobs.pop(job.token_id, None)

    async def _liquidate(self, job: Job) -> str:
        token = job.token_id
        tx = self.chain.liquidation_tx(token)
        label = f"liquidate:{token}"
        async with self._pending_slots:
            async with self._send_slots:
                if self.closing:
                    return "cancelled"
                job.state = "sending"
                try:
                    estimated: int | None = None
                    if self.presend is not None:
                        first = await self.presend.first_look(tx)
                        if isinstance(first, Skip):
                            return self._skipped(job, first)
                        estimated = first
                    async with self.window:  # from the pending-block call to the broadcast
                        if self.closing:
                            return "cancelled"
                        if self.presend is not None and estimated is not None:
                            verdict = await self.presend.last_look(
                                token, job.market_id, tx, estimated, job.size, job.index_price
                            )
                            if isinstance(verdict, Skip):
                                return self._skipped(job, verdict)
                            if verdict.assessment is not None:
                                job.reward = verdict.assessment.reward
                        pending = await self.sender.submit(tx, label, estimated_gas=estimated)
                        self.window.went_through()
                except TxRevertedError as exc:  # TxSender's own simulation (no PreSend)
                    cls = self._classify(exc)
                    return self._skipped(job, Skip(cls.reason, "latest", exc.reason, cls))
                except (InsufficientBalanceError, NonceGapError) as exc:
                    reason = (
                        "nonce_gap" if isinstance(exc, NonceGapError) else "insufficient_balance"
                    )
                    now = time.monotonic()
                    if now - self._last_funds_warning > 10:
                        self._last_funds_warning = now
                        log.error("not sending liquidations: %s", exc)
                    self._retry(token, reason)
                    return reason
                except Exception as exc:
                    log.warning("could not send %s: %s: %s", label, type(exc).__name__, exc)
                    self._retry(token, "send_failed")
                    return "send_failed"
            job.state = "sent"
            self.last_sent_at = time.monotonic()
            self.first_sent_at = self.first_sent_at or self.last_sent_at
            self.stats["sent"] += 1
            if self.metrics:
                self.metrics.liquidations_sent.add(1)
            try:
                receipt = await self._confirm(pending, label)
            except TxMinedRevertedError as exc:
                # Mined but reverted: another liquidator was first in the block, or the
                # position was made healthy ahead of us (addMargin, a price update). Only a
                # fresh read tells which: a gone position is dropped by the next round, a
                # still-open one stays tracked (dropping it here lost it for good).
                self.stats["mined_reverted"] += 1
                cls = await self._mined_revert_class(job, exc)
                if cls.lost_race:
                    self._lost_race(cls.reason, "mined")
                log.warning(
                    "%s mined but reverted (%s; gas used %s, tx %s): checking it again",
                    label,
                    "another liquidator was first" if cls.lost_race else "cause unknown",
                    exc.gas_used,
                    exc.tx_hash,
                )
                self._retry(token, "mined_reverted")
                return "mined_reverted"
            except Exception as exc:
                log.warning("%s not confirmed: %s: %s", label, type(exc).__name__, exc)
                self._retry(token, "unconfirmed")
                return "unconfirmed"
        self.stats["confirmed"] += 1
        if job.reward is not None:
            self.stats["reward_wad"] += job.reward
        if self.metrics:
            self.metrics.liquidations_confirmed.add(1)
            if job.reward is not None:
                self.metrics.rewards.add(job.reward / 1e18)
        log.info(
            "liquidated %d in block %s (tx %s)",
            token,
            receipt.get("blockNumber"),
            hex_str(receipt.get("transactionHash")),
        )
        self.cb.liquidated(token, receipt)
        return "confirmed"

    async def _confirm(self, pending: Any, label: str) -> dict[str, Any]:
        """The receipt. A transaction not mined within CONFIRM_TIMEOUT_S is still out there,
        holding its nonce: keep waiting for it (the ledger replaces it) with the token in
        flight, rather than let the next round send a second liquidation behind it. Only its
        resolution (mined, reverted, cancelled, consumed) or shutting down ends the wait."""
        failures = 0
        while True:
            try:
                return await self.sender.finish(pending)
            except TxTimeoutError as exc:
                if self.closing:
                    raise
                log.warning("%s: %s; still waiting for it, not sending another", label, exc)
                self.sender.track(pending)
            except (TxMinedRevertedError, TxNonceConsumedError, TxCancelledError):
                raise  # resolved
            except Exception as exc:
                if self.closing or self.sender.is_resolved(pending):
                    raise
                failures += 1
                log.warning(
                    "%s: waiting failed (%s: %s); still tracked, waiting again",
                    label,
                    type(exc).__name__,
                    exc,
                )
                self.sender.track(pending)
                await asyncio.sleep(backoff_delay(failures, 1.0, 10.0))

    def _classify(self, exc: TxRevertedError) -> RevertClass:
        decoder = getattr(self.sender, "decoder", None)
        decoded = decoder.decode_error(exc.data) if decoder is not None and exc.data else None
        return classify_revert(decoded, exc.reason)

    def _skipped(self, job: Job, skip: Skip) -> str:
        """Nothing was sent: a lost race, no room, an unprofitable or unexpected simulation."""
        token = job.token_id
        if skip.revert is None:  # unprofitable: a decision, not a failure
            self.stats["unprofitable"] += 1
            if self.metrics:
                self.metrics.unprofitable.add(1, {"market": job.market_id})
            self.cb.retry(token, "unprofitable")
            return "unprofitable"
        cls = skip.revert
        if cls.lost_race:
            self._lost_race(cls.reason, skip.stage)
        if cls.action is RevertAction.DROP:
            log.info(
                "liquidate:%d: %s on the %s block: dropped, nothing sent",
                token,
                skip.detail,
                skip.stage,
            )
            self._dropped(token, cls.reason)
            return "dropped"
        log.info(
            "liquidate:%d: simulation on the %s block reverted (%s): nothing sent, checking "
            "it again",
            token,
            skip.stage,
            skip.detail,
        )
        self._retry(token, cls.reason)
        return cls.reason

    def _lost_race(self, reason: str, stage: str) -> None:
        self.window.lost_race()
        self.stats["lost_races"] += 1
        if self.metrics:
            self.metrics.lost_races.add(1, {"reason": reason, "stage": stage})

    async def _mined_revert_class(self, job: Job, exc: TxMinedRevertedError) -> RevertClass:
        if self.presend is None:
            return MINED_REVERTED
        try:
            return await self.presend.mined_revert(job.token_id, job.block, exc.block_number)
        except Exception as err:  # the logs could not be read: counted as a plain revert
            log.debug("could not read the liquidations of %d: %s", job.token_id, err)
            return MINED_REVERTED

    def _dropped(self, token: int, reason: str) -> None:
        self.stats["dropped"] += 1
        if self.metrics:
            self.metrics.liquidations_dropped.add(1, {"reason": reason})
        self.cb.dropped(token, reason)

    def _retry(self, token: int, reason: str) -> None:
        self.stats["retry"] += 1
        if self.metrics:
            self.metrics.liquidation_failures.add(1, {"reason": reason})
        self.cb.retry(token, reason)

    async def release(self, match: Callable[[int], bool], wait_s: float) -> int:
        """Stop work on the tokens `match` accepts: cancel what is not broadcast yet, wait up to
        `wait_s` for what is. Returns how many were still unfinished at the deadline."""
        jobs = [j for t, j in list(self.jobs.items()) if match(t)]
        for job in jobs:
            if job.state == "queued" and job.task is not None:
                job.task.cancel()
        tasks = [j.task for j in jobs if j.task is not None]
        if not tasks:
            return 0
        done, not_done = await asyncio.wait(tasks, timeout=wait_s)
        for task in done:
            with contextlib.suppress(BaseException):
                task.result()
        return len(not_done)

    async def shutdown(self, wait_s: float) -> int:
        """Refuse new work; cancel liquidations not broadcast; wait for the broadcast ones."""
        self.closing = True
        return await self.release(lambda _t: True, wait_s)

    async def abort(self) -> None:
        for job in list(self.jobs.values()):
            if job.task is not None:
                job.task.cancel()
        tasks = [j.task for j in self.jobs.values() if j.task is not None]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
