"""The sync loop: chain -> (decode, fold) -> one PostgreSQL transaction per chunk.

Per chunk: headers of the block before the chunk (reorg check against the stored hash), of the
chunk's last block and, near the tip, of every block in the reorg window, are fetched BEFORE
eth_getLogs, so a reorg racing the fetch shows up as a hash mismatch on the next round instead
of going unnoticed. While a chunk is written the next one is already being fetched.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

from opentelemetry import context as otel_context

from services.indexer.chunking import ChunkPolicy
from services.indexer.copy_text import events_copy
from services.indexer.decode import DecodedLog, DecodeFailure, trace_json
from services.indexer.fetcher import FetchJob, FetchPool
from services.indexer.gc_pause import collect_every, gc_paused
from services.indexer.outbox_rows import OutboxRow
from services.indexer.prepare import chunk_hashes, encode_events, positions_needed
from services.indexer.progress import BackfillLog
from services.indexer.reorg import ReorgKind, decide, head_matches, window_floor
from services.indexer.rows import Fold
from services.indexer.rpc import BlockHeader, JsonRpc, RpcError
from services.indexer.settings import IndexerSettings, IndexTargets
from services.indexer.store import ChunkWrite, ConcurrentWriterError, Store
from services.indexer.sync_types import FetchedChunk, IndexerStats, ReorgInFlight, ReorgTooDeepError
from shared.readmodel.tables import MarketState, PositionRow
from shared.telemetry import meter, trace_carrier, tracer

log = logging.getLogger(__name__)
_tracer = tracer("perpex.indexer")
_meter = meter("perpex.indexer")


@dataclass
class _Prepared:
    write: ChunkWrite
    expected_last: int | None  # sync_status block the write expects (None: first write)
    trace_context: otel_context.Context


@dataclass
class _InFlight:
    task: asyncio.Task[None]
    prepared: _Prepared


class Indexer:
    def __init__(
        self,
        settings: IndexerSettings,
        targets: IndexTargets,
        rpc: JsonRpc,
        store: Store,
        fetch_pool: FetchPool,
        on_commit: Callable[[], None] | None = None,
        outbox_sink: Callable[[list[OutboxRow]], None] | None = None,
    ):
        self.settings = settings
        self.targets = targets
        self.rpc = rpc
        self.store = store
        self.fetch_pool = fetch_pool
        self.on_commit = on_commit or (lambda: None)
        # receives each chunk's outbox rows (with their messages) as soon as they commit
        self.outbox_sink = outbox_sink or (lambda rows: None)
        self.policy = ChunkPolicy(
            initial=settings.chunk_size,
            maximum=settings.max_chunk_size,
            target_logs=settings.max_logs_per_chunk,
        )
        self.stats = IndexerStats()
        self.last_block: int = targets.start_block - 1
        self.last_hash: str | None = None
        self.has_status = False
        # where the chain will be once the chunk being written commits
        self._tip_block = self.last_block
        self._tip_hash: str | None = None
        self._tip_has_status = False
        self.markets: dict[str, MarketState] = {}
        self.pairs: dict[str, str] = {}
        self.ranges: list[tuple[int, int]] = []  # every committed range (bench / tests)
        self.ready = False
        self.backfill = BackfillLog(log, settings.progress_log_s)
        self.heartbeat = time.monotonic()
        self._failure_logged: Counter[str] = Counter()
        self._register_metrics()

    # ---------------------------------------------------------------- metrics
    def _register_metrics(self) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        def lag(_: CallbackOptions) -> list[Observation]:
            value = self.stats.lag
            return [] if value is None else [Observation(value)]

        def eps(_: CallbackOptions) -> list[Observation]:
            return [Observation(self.stats.events_per_s)]

        def chunk(_: CallbackOptions) -> list[Observation]:
            return [Observation(self.policy.size)]

        _meter.create_observable_gauge(
            "perpex_indexer_lag_blocks", [lag], description="head - confirmations - last synced"
        )
        _meter.create_observable_gauge(
            "perpex_indexer_events_per_second", [eps], description="recent indexing rate"
        )
        _meter.create_observable_gauge(
            "perpex_indexer_chunk_size_blocks", [chunk], description="current eth_getLogs span"
        )
        self._events_counter = _meter.create_counter(
            "perpex_indexer_events", description="decoded events committed"
        )
        self._failures_counter = _meter.create_counter(
            "perpex_indexer_decode_failures", description="unknown or malformed logs"
        )
        self._reorg_counter = _meter.create_counter(
            "perpex_indexer_reorgs", description="reorgs rolled back"
        )

    # ---------------------------------------------------------------- state
    async def load(self) -> None:
        state = await self.store.load_state()
        if state.last_block is not None:
            self.last_block = state.last_block
            self.last_hash = state.last_hash
            self.has_status = True
        else:
            self.last_block = self.targets.start_block - 1
            self.last_hash = None
            self.has_status = False
        self.markets = await self.store.load_markets()
        self.pairs = {mid: info.pair for mid, info in self.targets.markets.items()}
        for mid, m in self.markets.items():
            if m.pair:
                self.pairs.setdefault(mid, m.pair)
        self.stats.last_block = self.last_block
        self._tip_block = self.last_block
        self._tip_hash = self.last_hash
        self._tip_has_status = self.has_status

    # ---------------------------------------------------------------- main loop
    async def run(self, stop: asyncio.Event, until_caught_up: bool = False) -> None:
        await self.load()
        failures = 0
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                with gc_paused():
                    caught_up = await self._round(stop)
                failures = 0
                self.ready = True
            except (ReorgTooDeepError, asyncio.CancelledError):
                raise
            except Exception as exc:
                failures += 1
                delay = min(30.0, 0.25 * 2 ** min(failures, 8))
                level = logging.WARNING if failures < 5 else logging.ERROR
                log.log(
                    level,
                    "sync round failed (%s: %s); retry in %.1fs",
                    type(exc).__name__,
                    exc,
                    delay,
                )
                if isinstance(exc, RpcError):
                    self.stats.rpc_errors[exc.outcome.value] += 1
                if failures >= 3:
                    self.ready = False
                await _sleep(stop, delay)
                with contextlib.suppress(Exception):
                    await self.load()  # resume from what is committed
                continue
            if caught_up:
                if until_caught_up:
                    return
                await _sleep(stop, self.settings.poll_interval)

    async def _round(self, stop: asyncio.Event) -> bool:
        """Index until caught up with head - confirmations (or stop). True when caught up."""
        head = await self.rpc.block_number()
        self.stats.head = head
        target = head - self.settings.confirmations
        start = self.last_block + 1
        if start > target:
            self.backfill.caught_up(time.monotonic())
            await self._check_tip()
            return True
        self.backfill.round_started(time.monotonic(), start, target)
        pending: asyncio.Task[FetchedChunk | None] | None = None
        inflight: _InFlight | None = None
        try:
            chunk = await self._fetch(start, target, head, stop)
            while chunk is not None:
                if (
                    chunk.parent is not None
                    and self._tip_hash is not None
                    and not head_matches(self._tip_hash, chunk.parent.hash)
                ):
                    await self._settle(inflight)
                    inflight = None
                    await self._handle_reorg()
                    return False
                if chunk.to_block < target and not stop.is_set():
                    pending = asyncio.create_task(
                        self._fetch(chunk.to_block + 1, target, head, stop)
                    )
                try:
                    prepared = await self._prepare(chunk, inflight)
                except ReorgInFlight as exc:
                    await self._settle(inflight)
                    inflight = None
                    log.info(
                        "chunk %d-%d changed while fetching (%s); refetching",
                        chunk.from_block,
                        chunk.to_block,
                        exc,
                    )
                    return False
                # The previous chunk's transaction ran while this one was prepared.
                await self._settle(inflight)
                # The write runs as a child of the chunk's span (same trace as the outbox rows'
                # headers), although the span itself already ended.
                token = otel_context.attach(prepared.trace_context)
                try:
                    task = asyncio.create_task(self._write(prepared))
                finally:
                    otel_context.detach(token)
                inflight = _InFlight(task, prepared)
                self.heartbeat = time.monotonic()
                collect_every(self.stats.chunks + 1)
                if stop.is_set() or pending is None:
                    break
                chunk = await pending
                pending = None
            await self._settle(inflight)
            inflight = None
        finally:
            if pending is not None:
                pending.cancel()
                with contextlib.suppress(BaseException):
                    await pending
            if inflight is not None:  # an error elsewhere: let the open transaction end
                with contextlib.suppress(BaseException):
                    await inflight.task
        if self.last_block >= target:
            self.backfill.caught_up(time.monotonic())
            return True
        return False

    async def _check_tip(self) -> None:
        """At the tip: is the last synced block still canonical?"""
        if self.last_hash is None or self.last_block < 0:
            return
        headers = await self.rpc.headers([self.last_block])
        current = headers.get(self.last_block)
        if not head_matches(self.last_hash, current.hash if current else None):
            await self._handle_reorg()

    # ---------------------------------------------------------------- fetch
    async def _fetch(
        self, start: int, target: int, head: int, stop: asyncio.Event
    ) -> FetchedChunk | None:
        while not stop.is_set():
            rng = self.policy.next_range(start, target)
            if rng is None:
                return None
            frm, to = rng
            try:
                wanted = {to}
                check_parent = frm - 1 >= max(0, self.targets.start_block)
                if check_parent:
                    wanted.add(frm - 1)
                window = self.settings.reorg_window
                if to > head - window:
                    wanted.update(range(max(frm, to - window + 1), to + 1))
                received = await self.fetch_pool.receive(FetchJob(frm, to, frozenset(wanted)))
            except RpcError as exc:
                self.stats.rpc_errors[exc.outcome.value] += 1
                self.policy.on_error(exc.outcome, exc.retry_after)
                log.info(
                    "eth_getLogs %d-%d: %s; next span %d blocks, wait %.2fs",
                    frm,
                    to,
                    exc,
                    self.policy.size,
                    self.policy.delay,
                )
                if self.policy.delay:
                    await _sleep(stop, self.policy.delay)
                continue
            self.policy.on_success(len(received.raw))
            decoding = asyncio.ensure_future(self.fetch_pool.decode(received))
            # an abandoned chunk (reorg, stop) must not log "exception never retrieved"
            decoding.add_done_callback(_retrieved)
            headers = received.headers
            parent = headers.get(frm - 1) if check_parent else None
            if check_parent and parent is None:
                # The chain is shorter than what we indexed: a reorg (handled by the caller).
                parent = BlockHeader(frm - 1, "0x", "0x", 0)
            return FetchedChunk(
                from_block=frm,
                to_block=to,
                head=head,
                parent=parent,
                headers={n: h for n, h in headers.items() if h is not None and n >= frm},
                decoding=decoding,
            )
        return None

    # ---------------------------------------------------------------- decode + write
    async def _take(self, chunk: FetchedChunk) -> list[DecodedLog]:
        """The chunk's decoded events; its bad logs counted and logged."""
        fetched = await chunk.decoding
        chunk.headers.update((n, h) for n, h in fetched.headers.items() if n >= chunk.from_block)
        for failure in fetched.failures:
            self._count_failure(failure)
        self.stats.filtered += fetched.filtered
        return fetched.events

    def _count_failure(self, failure: DecodeFailure) -> None:
        self.stats.decode_failures[failure.reason] += 1
        self._failures_counter.add(1, {"reason": failure.reason})
        seen = self._failure_logged[failure.reason]
        self._failure_logged[failure.reason] += 1
        if seen < 10 or seen % 1000 == 0:
            log.warning(
                "skipping %s log (block %s tx %s index %s): %s [%d so far]",
                failure.reason,
                failure.block_number,
                failure.tx_hash,
                failure.log_index,
                failure.detail,
                seen + 1,
            )

    async def _prepare(self, chunk: FetchedChunk, inflight: _InFlight | None) -> _Prepared:
        """Decode, fold and encode a chunk (CPU work, done while the previous chunk's
        transaction is still running). Positions that chunk touched come from its fold,
        copied, since the database does not have them yet."""
        with _tracer.start_as_current_span("indexer chunk") as span:
            span.set_attribute("indexer.from_block", chunk.from_block)
            span.set_attribute("indexer.to_block", chunk.to_block)
            events = await self._take(chunk)
            span.set_attribute("indexer.events", len(events))
            hashes = chunk_hashes(chunk.headers, events)
            needed = positions_needed(events)
            existing: dict[int, PositionRow] = {}
            if inflight is not None:
                recent = inflight.prepared.write.fold.positions
                existing = {t: replace(recent[t]) for t in needed if t in recent}
            existing.update(await self.store.load_positions(needed - set(existing)))
            markets = {mid: _copy_market(m) for mid, m in self.markets.items()}
            fold = Fold(existing, markets, self.pairs)
            result = fold.apply_all(events)
            if result.orphans:
                self.stats.orphans += len(result.orphans)
                log.warning(
                    "%d events for positions opened before START_BLOCK (first: %s %s)",
                    len(result.orphans),
                    result.orphans[0].name,
                    result.orphans[0].token_id,
                )
            pairs = dict(self.pairs)
            for mid, m in result.markets.items():
                if m.pair:
                    pairs[mid] = m.pair
            carrier = trace_carrier()
            trace: str | None = trace_json(carrier)
            chain_id = self.settings.chain_id
            fidx = result.funding_index_at
            messages, copy_lines = await encode_events(events, chain_id, pairs, trace, fidx)
            floor = window_floor(chunk.to_block, self.settings.reorg_window)
            write = ChunkWrite(
                from_block=chunk.from_block,
                to_block=chunk.to_block,
                to_hash=chunk.headers[chunk.to_block].hash,
                events=events,
                events_copy=events_copy(chain_id, events, fidx, copy_lines),
                messages=messages,
                fold=result,
                block_hashes={n: h for n, h in hashes.items() if n >= floor},
                window_floor=floor,
                trace_carrier=carrier,
            )
            trace_context = otel_context.get_current()
        prepared = _Prepared(
            write, self._tip_block if self._tip_has_status else None, trace_context
        )
        # Tentative state: what the chain looks like once this chunk commits. Any failure
        # reloads everything from the database.
        self._tip_block = chunk.to_block
        self._tip_hash = write.to_hash
        self._tip_has_status = True
        self.markets.update(result.markets)
        self.pairs = pairs
        return prepared

    async def _write(self, prepared: _Prepared) -> None:
        await self.store.write_chunk(prepared.write, prepared.expected_last, self.outbox_sink)

    async def _settle(self, inflight: _InFlight | None) -> None:
        """Wait for a chunk's transaction; on success advance the committed state."""
        if inflight is None:
            return
        try:
            await inflight.task
        except ConcurrentWriterError:
            log.error("sync_status moved under us; reloading")
            raise
        write = inflight.prepared.write
        self.last_block = write.to_block
        self.last_hash = write.to_hash
        self.has_status = True
        self.ranges.append((write.from_block, write.to_block))
        self.stats.last_block = write.to_block
        self.stats.chunks += 1
        self.stats.record_events(len(write.events))
        self.backfill.committed(time.monotonic(), write.to_block, len(write.events))
        if write.events:
            self._events_counter.add(len(write.events))
            self.on_commit()

    # ---------------------------------------------------------------- reorg
    async def _handle_reorg(self) -> None:
        with _tracer.start_as_current_span("indexer reorg") as span:
            stored = await self.store.recent_hashes()
            canonical_headers = await self.rpc.headers(n for n, _ in stored)
            canonical = {n: (h.hash if h else None) for n, h in canonical_headers.items()}
            decision = decide(stored, canonical)
            span.set_attribute("indexer.reorg.kind", decision.kind.value)
            if decision.kind is ReorgKind.NONE:
                log.info("tip hash changed but stored hashes are canonical; reloading state")
                await self.load()
                return
            if decision.kind is ReorgKind.TOO_DEEP:
                oldest = min((n for n, _ in stored), default=None)
                raise ReorgTooDeepError(
                    f"none of the {len(stored)} stored block hashes (from block {oldest}) is "
                    "canonical: the reorg is deeper than REORG_WINDOW; refusing to guess. "
                    "Raise REORG_WINDOW/CONFIRMATIONS and re-index from a known-good block."
                )
            assert decision.first_removed_block is not None
            result = await self.store.reorg.rollback(
                decision.first_removed_block,
                decision.ancestor_hash,
                self.pairs,
                self.targets.markets.values(),
                trace_carrier(),
            )
            span.set_attribute("indexer.reorg.removed_events", result.removed)
        self.stats.reorgs += 1
        self.stats.reverted_events += result.removed
        self._reorg_counter.add(1)
        log.warning(
            "reorg: rolled back blocks >= %d (%d events, %d positions rebuilt); "
            "compensating events queued",
            result.first_removed_block,
            result.removed,
            len(result.tokens),
        )
        await self.load()
        if result.removed:
            self.on_commit()

    def status(self) -> dict[str, Any]:
        s = self.stats
        return {
            "last_block": self.last_block,
            "head": s.head,
            "lag_blocks": s.lag,
            "chunk_size": self.policy.size,
            "events": s.events,
            "events_per_s": round(s.events_per_s, 1),
            "reorgs": s.reorgs,
            "reverted_events": s.reverted_events,
            "decode_failures": dict(s.decode_failures),
            "rpc_errors": dict(s.rpc_errors),
            "filtered": s.filtered,
        }


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


def _copy_market(m: MarketState) -> MarketState:
    return MarketState(**{f: getattr(m, f) for f in m.__slots__})  # type: ignore[attr-defined]


async def _sleep(stop: asyncio.Event, delay: float) -> None:
    if delay <= 0:
        return
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), delay)
