"""Fetcher.receive and Fetcher.decode, the fetch threads' jobs (headers, then the eth_getLogs
answer; decoded events in chain order), with the node replaced by canned answers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import pytest
from test_indexer_decode import MID, NFT, PM, TABLE, opened, raw_log, word

from services.indexer.decode import market_id_of
from services.indexer.fetcher import FetchConfig, Fetcher, FetchJob, FetchResult
from services.indexer.rpc import BlockHeader, RpcError


class CannedNode:
    def __init__(self, logs: list[dict[str, Any]], timestamps: dict[int, int]):
        self.logs = logs
        self.timestamps = timestamps
        self.header_calls: list[set[int]] = []

    def get_logs(self, *_: Any) -> list[dict[str, Any]]:
        return self.logs

    def headers(self, numbers: Iterable[int]) -> dict[int, BlockHeader | None]:
        wanted = set(numbers)
        self.header_calls.append(wanted)
        return {
            n: (
                BlockHeader(n, "0x" + "aa" * 32, "0x" + "bb" * 32, self.timestamps[n])
                if n in self.timestamps
                else None
            )
            for n in wanted
        }

    def close(self) -> None:
        pass


def fetcher(
    logs: list[dict[str, Any]], timestamps: dict[int, int], markets: frozenset[str] | None = None
) -> tuple[Fetcher, CannedNode]:
    f = Fetcher(
        FetchConfig("http://unused", 1.0, {PM: "PositionManager", NFT: "PositionNFT"}, markets),
        TABLE,
    )
    node = CannedNode(logs, timestamps)
    f.rpc = node  # type: ignore[assignment]
    return f, node


def run(f: Fetcher, job: FetchJob) -> FetchResult:
    return f.decode(f.receive(job))


def test_events_come_back_in_chain_order_with_failures_counted() -> None:
    logs = [
        opened(9, blockNumber="0x11", logIndex="0x0"),
        opened(8, blockNumber="0x10", logIndex="0x5"),
        opened(7, blockNumber="0x10", logIndex="0x2"),
        opened(6, address="0x" + "99" * 20),  # not ours
    ]
    f, node = fetcher(logs, {15: 1, 17: 2})
    received = f.receive(FetchJob(16, 17, frozenset({15})))
    assert node.header_calls == [{15, 17}] and len(received.raw) == 4
    result = f.decode(received)
    assert [(e.block_number, e.log_index, e.token_id) for e in result.events] == [
        (16, 2, 7),
        (16, 5, 8),
        (17, 0, 9),
    ]
    assert [x.reason for x in result.failures] == ["unknown_contract"]
    assert node.header_calls == [{15, 17}] and result.headers == {}  # logs carried timestamps


def test_a_node_without_the_chunks_last_block_is_a_transient_error() -> None:
    f, _ = fetcher([opened(7)], {15: 1})
    with pytest.raises(RpcError, match="does not have block 16"):
        f.receive(FetchJob(16, 16, frozenset({15})))


def test_missing_timestamps_are_read_from_headers_not_already_known() -> None:
    logs = [opened(7, blockNumber="0x10"), opened(8, blockNumber="0x12")]
    for log in logs:
        log.pop("blockTimestamp")
    f, node = fetcher(logs, {16: 111, 18: 333})
    result = run(f, FetchJob(16, 16, frozenset({16})))
    assert node.header_calls == [{16}, {18}]  # block 16's timestamp came with the chunk's headers
    assert [e.block_timestamp for e in result.events] == [111, 333]
    assert set(result.headers) == {18}


def test_logs_whose_header_the_node_lacks_make_the_chunk_fetched_again() -> None:
    """Not decode failures: those logs would be lost for good."""
    logs = [opened(7, blockNumber="0x10"), opened(8, blockNumber="0x12")]
    for log in logs:
        log.pop("blockTimestamp")
    f, _ = fetcher(logs, {16: 111})  # block 18's header is not there (yet)
    with pytest.raises(RpcError, match=r"no header for block\(s\) \[18\]"):
        run(f, FetchJob(16, 16, frozenset({16})))


def test_market_filter_counts_the_rest() -> None:
    other = market_id_of("BTC/USDT")
    logs = [
        opened(7),
        raw_log("PositionMinted", [word(8), "0x" + "00" * 12 + "ab" * 20, other], [], []),
    ]
    f, _ = fetcher(logs, {16: 1}, frozenset({MID}))
    result = run(f, FetchJob(16, 16))
    assert [e.token_id for e in result.events] == [7] and result.filtered == 1
