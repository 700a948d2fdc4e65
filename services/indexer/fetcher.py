"""One chunk's eth_getLogs and decoding, as a blocking job on the fetch thread.

The indexer's event loop does the chunk transaction, the fold, the Kafka encoding and the
outbox drainer. Fetching and decoding the next chunk needs none of that state, so it runs on a
thread of its own (`FetchPool`): the node's multi-megabyte answer streams in at the node's
pace while the loop is busy (socket reads release the interpreter lock; awaited on the loop it
was read 64 KiB per loop turn, which throttled the node to the loop's pace), and the loop stays
free for PostgreSQL and Kafka I/O meanwhile. The job is a pure function of (range, known
timestamps): `Fetcher.run`; errors come back as `RpcError` for the chunk policy.

(A worker process instead of the thread was measured too: it spent more CPU pickling the
decoded events across than it saved, and was slower overall on two cores.)
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import operator
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from services.indexer.decode import DecodedLog, DecodeFailure, EventSpec, LogDecoder
from services.indexer.rpc import BlockHeader, BlockingRpc

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
    timestamps: Mapping[int, int] = field(default_factory=dict)  # from headers already fetched


@dataclass
class FetchResult:
    logs: int  # logs the node answered (what the chunk policy counts)
    events: list[DecodedLog]  # decoded and kept, in chain order
    failures: list[DecodeFailure]
    filtered: int  # decoded, but of a market not served
    headers: dict[int, BlockHeader]  # headers fetched for logs that carried no timestamp


class Fetcher:
    """eth_getLogs over a range of the followed contracts, decoded. Blocking."""

    def __init__(self, config: FetchConfig, table: Mapping[str, EventSpec] | None = None):
        if table is None:
            from services.indexer.app import load_event_table

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

    def run(self, job: FetchJob) -> FetchResult:
        raw = self.fetch_logs(job.from_block, job.to_block)
        timestamps: Mapping[int, int] = job.timestamps
        headers: dict[int, BlockHeader] = {}
        missing = {
            int(r["blockNumber"], 16)
            for r in raw
            if isinstance(r, dict)
            and r.get("blockTimestamp") is None
            and isinstance(r.get("blockNumber"), str)
        } - set(timestamps)
        if missing:  # a node that leaves blockTimestamp out of its logs
            headers = {n: h for n, h in self.rpc.headers(missing).items() if h is not None}
            timestamps = {**timestamps, **{n: h.timestamp for n, h in headers.items()}}
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
        return FetchResult(len(raw), events, failures, filtered, headers)


class FetchPool:
    """Runs fetch jobs one at a time on the fetch thread, from asyncio."""

    def __init__(self, config: FetchConfig, table: Mapping[str, EventSpec] | None = None):
        self.fetcher = Fetcher(config, table)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="indexer-fetch")

    async def run(self, job: FetchJob) -> FetchResult:
        # in the caller's context, so the thread's spans join the caller's trace
        context = contextvars.copy_context()
        return await asyncio.wrap_future(self._executor.submit(context.run, self.fetcher.run, job))

    async def close(self) -> None:
        # A job still running ends by itself within the RPC timeout.
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.fetcher.close()
