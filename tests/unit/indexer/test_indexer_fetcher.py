"""Fetcher.run: the fetch thread's job (eth_getLogs answer -> decoded events in chain order),
with the node replaced by canned answers."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from test_indexer_decode import MID, NFT, PM, TABLE, opened, raw_log, word

from services.indexer.decode import market_id_of
from services.indexer.fetcher import FetchConfig, Fetcher, FetchJob
from services.indexer.rpc import BlockHeader


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
            n: BlockHeader(n, "0x" + "aa" * 32, "0x" + "bb" * 32, self.timestamps[n])
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


def test_events_come_back_in_chain_order_with_failures_counted() -> None:
    logs = [
        opened(9, blockNumber="0x11", logIndex="0x0"),
        opened(8, blockNumber="0x10", logIndex="0x5"),
        opened(7, blockNumber="0x10", logIndex="0x2"),
        opened(6, address="0x" + "99" * 20),  # not ours
    ]
    f, node = fetcher(logs, {})
    result = f.run(FetchJob(16, 17, {}))
    assert result.logs == 4
    assert [(e.block_number, e.log_index, e.token_id) for e in result.events] == [
        (16, 2, 7),
        (16, 5, 8),
        (17, 0, 9),
    ]
    assert [x.reason for x in result.failures] == ["unknown_contract"]
    assert node.header_calls == [] and result.headers == {}


def test_missing_timestamps_are_read_from_headers_not_already_known() -> None:
    logs = [opened(7, blockNumber="0x10"), opened(8, blockNumber="0x12")]
    for log in logs:
        log.pop("blockTimestamp")
    f, node = fetcher(logs, {16: 111, 18: 333})
    result = f.run(FetchJob(16, 18, {16: 111}))
    assert node.header_calls == [{18}]
    assert [e.block_timestamp for e in result.events] == [111, 333]
    assert set(result.headers) == {18}


def test_market_filter_counts_the_rest() -> None:
    other = market_id_of("BTC/USDT")
    logs = [
        opened(7),
        raw_log("PositionMinted", [word(8), "0x" + "00" * 12 + "ab" * 20, other], [], []),
    ]
    f, _ = fetcher(logs, {}, frozenset({MID}))
    result = f.run(FetchJob(16, 16, {}))
    assert [e.token_id for e in result.events] == [7] and result.filtered == 1
