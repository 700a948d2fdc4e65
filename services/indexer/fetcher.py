"""One chunk's eth_getLogs and decoding, as blocking jobs on the fetch threads.

The indexer's event loop does the chunk transaction, the fold, the Kafka encoding and the
outbox drainer. Fetching and decoding the next chunk needs none of that state, so it runs on
threads of their own (`FetchPool`): a receive thread (`Fetcher.receive`: the chunk's headers,
then its logs) and a decode thread (`Fetcher.decode`). The node's multi-megabyte answer streams
in at the node's pace while the loop is busy (socket reads release the interpreter lock;
awaited on the loop it was read 64 KiB per loop turn, which throttled the node to the loop's
pace), the next answer arrives while one is decoded, and the loop stays free for PostgreSQL and
Kafka I/O. Errors come back as `RpcError` for the chunk policy.

(A worker process instead of the threads was measured too: it spent more CPU pickling the
decoded events across than it saved, and was slower overall on two cores.)
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import operator
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from services.indexer.chunking import Outcome
from services.indexer.decode import DecodedLog, DecodeFailure, LogDecoder
from services.indexer.event_specs import EventSpec, load_event_table
from services.indexer.rpc import BlockHeader, BlockingRpc, RpcError

log = logging.getLogger(__name__)

_chain_order = operator.attrgetter("block_number", "log_index")


@dataclass(frozen=True)
class FetchConfig:
    rpc_url: str
    timeout: float
    contracts: Mapping[str, str]  # lower-case address -> emitter ("PositionManager", ...)
    market_filter: frozenset[str] | None  # market ids to keep (None: all)


@dataclass(frozen=True)
class FetchJob:
    from_block: int
    to_block: int
    header_numbers: frozenset[int] = frozenset()  # headers to read first (to_block among them)


@dataclass
class Received:
    """A chunk's answer, not decoded yet."""

    headers: dict[int, BlockHeader | None]  # read before the logs; None: the node has no such block
    raw: list[dict[str, Any]]


@dataclass
class FetchResult:
    events: list[DecodedLog]  # decoded and kept, in chain order
    failures: list[DecodeFailure]
    filtered: int  # decoded, but of a market not served
    headers: dict[int, BlockHeader]  # headers fetched for logs that carried no timestamp


class Fetcher:
    """eth_getLogs over a range of the followed contracts, decoded. Blocking."""

    def __init__(self, config: FetchConfig, table: Mapping[str, EventSpec] | None = None):
        if table is None:
            table = load_event_table()
        self.config = config
        self.decoder = LogDecoder(table, config.contracts)
        self.addresses = sorted(self.decoder.contracts)
        self.topics = self.decoder.topics
        self.rpc = BlockingRpc(config.rpc_url, config.timeout)

    def close(self) -> None:
        self.rpc.close()

    def fetch_logs(self, from_block: int, to_block: int) -> list[dict[str, Any]]:
        return self.rpc.get_logs(self.addresses, self.topics, from_block, to_block)

    def receive(self, job: FetchJob) -> Received:
        """The headers the indexer checks the chunk against, then the chunk's logs: headers
        first, so that a reorg racing the fetch shows up as a hash mismatch."""
        headers = self.rpc.headers(job.header_numbers | {job.to_block})
        if headers.get(job.to_block) is None:
            raise RpcError(Outcome.TRANSIENT, f"node does not have block {job.to_block} yet")
        return Received(headers, self.fetch_logs(job.from_block, job.to_block))

    def decode(self, received: Received) -> FetchResult:
        raw = received.raw
        timestamps = {n: h.timestamp for n, h in received.headers.items() if h is not None}
        headers: dict[int, BlockHeader] = {}
        missing = {
            int(r["blockNumber"], 16)
            for r in raw
            if isinstance(r, dict)
            and r.get("blockTimestamp") is None
            and isinstance(r.get("blockNumber"), str)
        } - set(timestamps)
        if missing:  # a node that leaves blockTimestamp out of its logs
            fetched = self.rpc.headers(missing)
            headers = {n: h for n, h in fetched.items() if h is not None}
            absent = sorted(missing - set(headers))
            if absent:
                # (a node behind the one that served the logs, or a chain that just
                # shortened): fetch the chunk again rather than lose its logs as malformed
                raise RpcError(
                    Outcome.TRANSIENT,
                    f"node has no header for block(s) {absent[:5]} the logs came from",
                )
            timestamps.update((n, h.timestamp) for n, h in headers.items())
        decode = self.decoder.decode
        keep = self.config.market_filter
        events: list[DecodedLog] = []
        failures: list[DecodeFailure] = []
        filtered = 0
        for r in raw:
            result = decode(r, timestamps)
            if type(result) is DecodedLog:
                if keep is not None and result.market_id not in keep:
                    filtered += 1
                else:
                    events.append(result)
            else:
                assert isinstance(result, DecodeFailure)
                failures.append(result)
        events.sort(key=_chain_order)
        return FetchResult(events, failures, filtered, headers)


class FetchPool:
    """The fetch threads, from asyncio: one receives chunk answers from the node, one decodes
    them, so the next chunk's answer streams in while the previous one is decoded. Each runs in
    its caller's context, so its spans join the caller's trace."""

    def __init__(self, config: FetchConfig, table: Mapping[str, EventSpec] | None = None):
        self.fetcher = Fetcher(config, table)
        self._receiver = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexer-receive")
        self._decoder = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexer-decode")

    async def receive(self, job: FetchJob) -> Received:
        context = contextvars.copy_context()
        return await asyncio.wrap_future(
            self._receiver.submit(context.run, self.fetcher.receive, job)
        )

    async def decode(self, received: Received) -> FetchResult:
        context = contextvars.copy_context()
        return await asyncio.wrap_future(
            self._decoder.submit(context.run, self.fetcher.decode, received)
        )

    async def close(self) -> None:
        # A request still running ends by itself within the RPC timeout.
        self._receiver.shutdown(wait=False, cancel_futures=True)
        self._decoder.shutdown(wait=False, cancel_futures=True)
        self.fetcher.close()
