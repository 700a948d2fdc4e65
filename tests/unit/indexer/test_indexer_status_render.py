"""`perpex indexer status` output (pure parts)."""

from __future__ import annotations

from pathlib import Path

from services.indexer.status import Status, StatusSettings, contract_names, render


def _status(**over) -> Status:  # type: ignore[no-untyped-def]
    s = Status(
        head=1_234,
        confirmations=2,
        outbox={"messages": 4_100, "rows": 3, "oldest_age_s": 1.25},
        contracts=[
            {"contract_address": "0x" + "a" * 40, "name": "PositionManager",
             "last_synced_block": 1_200, "last_synced_hash": "0x" + "f" * 64,
             "updated_at": None, "seconds_since_update": 3.0},
            {"contract_address": "0x" + "b" * 40, "name": None, "last_synced_block": 1_190,
             "last_synced_hash": None, "updated_at": None, "seconds_since_update": 7200.0},
        ],
    )  # fmt: skip
    for k, v in over.items():
        setattr(s, k, v)
    return s


def test_lag_counts_confirmations_and_the_slowest_contract() -> None:
    s = _status()
    assert s.indexed_block == 1_190 and s.lag_blocks == 1_234 - 2 - 1_190
    assert _status(head=None).lag_blocks is None
    assert _status(head=1_000).lag_blocks == 0
    j = s.as_json()
    assert (j["head"], j["indexed_block"], j["lag_blocks"]) == (1_234, 1_190, 42)
    assert j["outbox"]["messages"] == 4_100 and j["errors"] == {}


def test_table() -> None:
    text = render(_status())
    lines = text.splitlines()
    assert lines[0] == "head            1,234"
    assert lines[1] == "indexed block   1,190"
    assert lines[2] == "lag             42 blocks (CONFIRMATIONS 2)"
    assert lines[3] == "outbox backlog  4,100 messages in 3 rows, oldest 1.2s old"
    assert lines[5].split() == ["contract", "name", "last", "block", "block", "hash", "updated"]
    assert "PositionManager" in lines[6] and "1,200" in lines[6] and "3.0s ago" in lines[6]
    assert lines[7].split()[1:3] == ["-", "1,190"] and lines[7].endswith("2.0h ago")
    unknown = render(_status(head=None, contracts=[], outbox=None))
    assert "head            unknown" in unknown and "sync_status is empty" in unknown


def test_contract_names_from_settings(tmp_path: Path) -> None:
    settings = StatusSettings(
        rpc_url="http://127.0.0.1:8545",
        position_manager_address="0x" + "A" * 40,
        deployment_file=tmp_path / "missing.json",
        _env_file=None,  # type: ignore[call-arg]
    )
    assert contract_names(settings) == {"0x" + "a" * 40: "PositionManager"}
