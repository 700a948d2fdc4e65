"""Pure steps of a chunk's preparation: the hashes it vouches for, the positions it needs."""

from __future__ import annotations

import pytest

from services.indexer.decode import DecodedLog
from services.indexer.prepare import chunk_hashes, positions_needed
from services.indexer.rpc import BlockHeader
from services.indexer.sync_types import ReorgInFlight


def _log(name: str, block: int, block_hash: str, token: int | None = None) -> DecodedLog:
    return DecodedLog(name, "0xpm", block, block_hash, 0, "0xtx", 0, {}, token, None)


def test_hashes_come_from_headers_and_logs_and_a_disagreement_is_a_reorg_in_flight() -> None:
    headers = {10: BlockHeader(10, "0xa", "0x9", 1), 12: BlockHeader(12, "0xc", "0xb", 3)}
    events = [_log("PositionOpened", 10, "0xa", 1), _log("MarginChanged", 11, "0xb", 1)]
    assert chunk_hashes(headers, events) == {10: "0xa", 11: "0xb", 12: "0xc"}
    with pytest.raises(ReorgInFlight, match="block 12"):
        chunk_hashes(headers, [_log("MarginChanged", 12, "0xother", 1)])


def test_positions_needed_are_those_changed_but_not_opened_in_the_chunk() -> None:
    events = [
        _log("PositionOpened", 1, "0x1", 1),
        _log("MarginChanged", 1, "0x1", 1),
        _log("PositionClosed", 2, "0x2", 2),
        _log("PositionLiquidated", 2, "0x2", 3),
        _log("PositionReduced", 2, "0x2", 4),
        _log("FundingRateUpdated", 2, "0x2", None),
        _log("MarginChanged", 2, "0x2", None),
    ]
    assert positions_needed(events) == {2, 3, 4}
