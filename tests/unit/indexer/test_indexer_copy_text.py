"""COPY text rows: the fast one-format-per-row path equals the field-by-field reference, and any
value COPY would misread sends the whole table down the escaping path."""

from __future__ import annotations

from services.indexer.copy_text import (
    NULL,
    event_values,
    events_copy,
    field,
    line,
    positions_copy,
)
from services.indexer.decode import DecodedLog
from services.indexer.rows import PositionRow

TX = "0x" + "ab" * 32
BH = "0x" + "cd" * 32
MID = "0x" + "11" * 32


def event(log_index: int, **over: object) -> DecodedLog:
    values: dict[str, object] = {
        "name": "PositionOpened",
        "contract": "0x" + "22" * 20,
        "block_number": 7,
        "block_hash": BH,
        "block_timestamp": 1_700_000_000,
        "tx_hash": TX,
        "log_index": log_index,
        "args": {"tokenId": 5, "isLong": True, "pnl": -(10**30)},
        "token_id": 5,
        "market_id": MID,
    }
    values.update(over)
    return DecodedLog(**values)  # type: ignore[arg-type]


def position(**over: object) -> PositionRow:
    values: dict[str, object] = {
        "token_id": 5,
        "market_id": MID,
        "market": "ETH/USDT",
        "owner": "0x" + "33" * 20,
        "is_long": False,
        "collateral": 10**21,
        "leverage": 3 * 10**18,
        "size": 1,
        "notional": 2,
        "entry_price": 3,
        "entry_funding_index": -4,
        "open_fee": 5,
        "status": "open",
        "opened_block": 7,
        "opened_timestamp": 1_700_000_000,
        "opened_tx": TX,
        "updated_block": 7,
    }
    values.update(over)
    return PositionRow(**values)  # type: ignore[arg-type]


def reference_events(evs: list[DecodedLog], fidx: dict[tuple[int, int], int]) -> bytes:
    """Field by field: the path the fast rows must equal."""
    return "".join(line(event_values(31337, e, fidx)) for e in evs).encode()


def test_fields() -> None:
    assert field(None) == NULL == "\\N"
    assert (field(True), field(False), field(-12)) == ("t", "f", "-12")
    assert field('a\\b\tc\nd\re"') == 'a\\\\b\\tc\\nd\\re"'


def test_events_fast_rows_equal_the_reference() -> None:
    evs = [
        event(1),
        event(2, name="FundingRateUpdated", token_id=None, args={"marketId": MID, "rate": -3}),
        event(3, market_id=None),
    ]
    fidx = {(7, 1): 10**40}
    data = events_copy(31337, evs, fidx)
    assert data == reference_events(evs, fidx)
    rows = data.decode().splitlines()
    assert rows[0].split("\t")[-1] == str(10**40)
    assert rows[1].split("\t")[8] == NULL and rows[2].split("\t")[9] == NULL
    assert (
        rows[0].split("\t")[10] == '{"tokenId":"5","isLong":true,"pnl":"-' + "1" + "0" * 30 + '"}'
    )


def test_events_special_characters_take_the_escaping_path() -> None:
    pair = 'E\\T\tH\n"/€'
    evs = [event(1), event(2, name="MarketAdded", token_id=None, args={"pair": pair})]
    data = events_copy(31337, evs, {})
    assert data == reference_events(evs, {})
    text = data.decode()
    assert text.count("\n") == 2 and "\\\\" in text and "\\t" in text
    # a hash a broken node sent with a tab in it cannot shift the columns either
    bad = [event(1, tx_hash="0x12\t34")]
    assert events_copy(31337, bad, {}).decode().split("\t")[1] == "0x12\\t34"


def test_positions_fast_rows_equal_the_reference() -> None:
    rows = [
        position(),
        position(
            token_id=6,
            market=None,
            status="closed",
            closed_block=9,
            closed_timestamp=1_700_000_100,
            closed_tx=TX,
            exit_price=7,
            realized_pnl=-8,
            funding_payment=0,
            payout=None,
        ),
    ]
    data = positions_copy(rows)
    assert data == "".join(line(r.record()) for r in rows).encode()
    assert data.decode().splitlines()[1].split("\t")[2] == NULL
    weird = [position(market="A\\B")]
    assert positions_copy(weird) == line(weird[0].record()).encode()
    assert "A\\\\B" in positions_copy(weird).decode()
