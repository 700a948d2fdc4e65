from __future__ import annotations

from services.indexer.reorg import ReorgKind, decide, head_matches, window_floor


def h(n: int, fork: str = "a") -> str:
    return f"0x{fork}{n:063x}"


def test_no_stored_hashes_means_nothing_to_check() -> None:
    assert decide([], {}).kind is ReorgKind.NONE


def test_canonical_tip_is_no_reorg() -> None:
    stored = [(n, h(n)) for n in range(10, 20)]
    d = decide(stored, {n: h(n) for n in range(10, 20)})
    assert d.kind is ReorgKind.NONE and d.ancestor_block == 19


def test_finds_newest_common_ancestor() -> None:
    stored = [(n, h(n)) for n in range(10, 20)]
    canonical = {n: (h(n) if n < 17 else h(n, "b")) for n in range(10, 20)}
    d = decide(stored, canonical)
    assert d.kind is ReorgKind.REORG
    assert d.ancestor_block == 16 and d.first_removed_block == 17 and d.ancestor_hash == h(16)


def test_sparse_hashes_roll_back_to_last_known_good() -> None:
    stored = [(5, h(5)), (12, h(12)), (30, h(30))]
    canonical = {5: h(5), 12: h(12, "b"), 30: h(30, "b")}
    d = decide(stored, canonical)
    assert d.first_removed_block == 6


def test_shorter_chain_counts_as_mismatch() -> None:
    stored = [(8, h(8)), (9, h(9)), (10, h(10))]
    d = decide(stored, {8: h(8), 9: None, 10: None})
    assert d.kind is ReorgKind.REORG and d.first_removed_block == 9


def test_deeper_than_window_is_reported() -> None:
    stored = [(n, h(n)) for n in range(10, 13)]
    d = decide(stored, {n: h(n, "b") for n in range(10, 13)})
    assert d.kind is ReorgKind.TOO_DEEP


def test_hash_comparison_ignores_case() -> None:
    assert head_matches("0xABC", "0xabc")
    assert not head_matches(None, "0xabc")
    assert not head_matches("0xabc", None)


def test_window_floor() -> None:
    assert window_floor(200, 128) == 73
    assert window_floor(5, 128) == 0
