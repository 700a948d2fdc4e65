"""The relayer's packet codec and state file (pure)."""

from __future__ import annotations

from pathlib import Path

import pytest
from eth_abi import encode
from eth_utils import keccak

from services.relayer.packets import (
    BridgeMessage,
    MalformedPacket,
    Packet,
    left_pad,
    packet_from_log_data,
)
from services.relayer.state import RelayerState, Seen

SENDER = "0x" + "11" * 20
RECEIVER = "0x" + "22" * 20


def _raw(nonce: int = 7, message: bytes | None = None) -> bytes:
    message = (
        message
        if message is not None
        else encode(["uint16", "address", "uint256"], [1, "0x" + "33" * 20, 5 * 10**18])
    )
    guid = keccak(b"guid")
    return (
        bytes([1])
        + nonce.to_bytes(8, "big")
        + (31338).to_bytes(4, "big")
        + left_pad(SENDER)
        + (31337).to_bytes(4, "big")
        + left_pad(RECEIVER)
        + guid
        + message
    )


def test_packet_fields_and_payload_hash() -> None:
    raw = _raw()
    p = Packet.decode(raw)
    assert (p.nonce, p.src_eid, p.dst_eid) == (7, 31338, 31337)
    assert p.sender == left_pad(SENDER) and p.sender_address.lower() == SENDER
    assert p.receiver.lower() == RECEIVER
    assert p.guid == keccak(b"guid")
    assert p.payload_hash == keccak(p.guid + p.message)  # what EndpointV2 stores
    assert p.origin() == (31338, left_pad(SENDER), 7)
    m = BridgeMessage.decode(p.message)
    assert (m.kind, m.amount) == (1, 5 * 10**18)
    assert m.describe()["kind"] == "credit"


def test_packet_from_log_data() -> None:
    data = encode(["bytes", "bytes", "address"], [_raw(), b"\x00\x03", "0x" + "44" * 20])
    assert packet_from_log_data(data).nonce == 7
    with pytest.raises(MalformedPacket):
        packet_from_log_data(b"\x01\x02")


@pytest.mark.parametrize(
    "raw",
    [b"\x01" * 50, b"\x02" + _raw()[1:], _raw()[:49] + b"\x01" * 32 + _raw()[81:]],
    ids=["short", "version", "receiver-not-evm"],
)
def test_malformed_packets(raw: bytes) -> None:
    with pytest.raises(MalformedPacket):
        Packet.decode(raw)


def test_bridge_message_length_is_checked() -> None:
    with pytest.raises(MalformedPacket):
        BridgeMessage.decode(b"\x00" * 95)


def test_state_round_trip_and_fresh_start(tmp_path: Path) -> None:
    path = tmp_path / "state.json"
    starts = {"remote->home": 4, "home->remote": 9}
    s = RelayerState.load(path, "dep-a", starts)
    assert s.lanes["remote->home"].scanned_to == 4 and not s.lanes["remote->home"].pending
    p = Packet.decode(_raw())
    seen = Seen(p, "0x" + "ab" * 32, 39)
    s.lanes["remote->home"].pending[p.guid_hex] = seen
    s.lanes["remote->home"].scanned_to = 40
    s.lanes["remote->home"].scanned_hash = "0x" + "cd" * 32
    s.save()
    again = RelayerState.load(path, "dep-a", starts)
    lane = again.lanes["remote->home"]
    assert (lane.scanned_to, lane.scanned_hash) == (40, "0x" + "cd" * 32)
    assert lane.pending[p.guid_hex] == seen
    assert again.lanes["home->remote"].scanned_to == 9
    lane.reset()  # a cursor the chain no longer has: start over
    assert (lane.scanned_to, lane.scanned_hash, lane.pending) == (4, None, {})
    # another deployment's state, or a damaged file: start over (the chain says what is done)
    assert RelayerState.load(path, "dep-b", starts).lanes["remote->home"].scanned_to == 4
    path.write_text("{not json")
    assert RelayerState.load(path, "dep-a", starts).lanes["remote->home"].scanned_to == 4
    assert not list(tmp_path.glob(".state.json.*")), "no temporary files left behind"
