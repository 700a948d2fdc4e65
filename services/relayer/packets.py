"""LayerZero V2 packets as EndpointV2 emits them in `PacketSent(bytes encodedPayload, bytes
options, address sendLibrary)` (pure).

Packet v1 layout (PacketV1Codec): version (1 byte) | nonce (8) | srcEid (4) | sender (32) |
dstEid (4) | receiver (32) | guid (32) | message. The destination endpoint keeps
keccak256(guid | message) as the payload hash between verification and delivery.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_utils import keccak, to_checksum_address

PACKET_VERSION = 1
HEADER_LEN = 81
GUID_END = 113
# EndpointV2's payload-hash sentinels (MessagingChannel)
EMPTY_PAYLOAD_HASH = b"\x00" * 32
NIL_PAYLOAD_HASH = b"\xff" * 32


class MalformedPacket(ValueError):
    pass


@dataclass(frozen=True)
class Packet:
    raw: bytes  # the encoded packet: what the verifier hands to validatePacket
    nonce: int
    src_eid: int
    sender: bytes  # 32 bytes (a left-padded EVM address)
    dst_eid: int
    receiver: str  # checksummed EVM address
    guid: bytes
    message: bytes

    @classmethod
    def decode(cls, raw: bytes) -> Packet:
        if len(raw) < GUID_END:
            raise MalformedPacket(f"packet of {len(raw)} bytes is shorter than its header")
        if raw[0] != PACKET_VERSION:
            raise MalformedPacket(f"packet version {raw[0]}, expected {PACKET_VERSION}")
        receiver = raw[49:81]
        if receiver[:12].strip(b"\x00"):
            raise MalformedPacket("receiver is not an EVM address")
        return cls(
            raw=raw,
            nonce=int.from_bytes(raw[1:9], "big"),
            src_eid=int.from_bytes(raw[9:13], "big"),
            sender=raw[13:45],
            dst_eid=int.from_bytes(raw[45:49], "big"),
            receiver=to_checksum_address(receiver[12:]),
            guid=raw[81:113],
            message=raw[113:],
        )

    @property
    def payload_hash(self) -> bytes:
        return keccak(self.guid + self.message)

    @property
    def sender_address(self) -> str:
        return to_checksum_address(self.sender[12:])

    @property
    def guid_hex(self) -> str:
        return "0x" + self.guid.hex()

    def origin(self) -> tuple[int, bytes, int]:
        """The `Origin` struct (srcEid, sender, nonce) of the endpoint's calls."""
        return (self.src_eid, self.sender, self.nonce)


def packet_from_log_data(data: bytes) -> Packet:
    """The packet of a PacketSent log's data (abi-encoded bytes, bytes, address)."""
    try:
        encoded, _options, _lib = abi_decode(["bytes", "bytes", "address"], data)
    except Exception as exc:
        raise MalformedPacket(f"PacketSent data does not decode: {exc}") from None
    return Packet.decode(bytes(encoded))


def left_pad(address: str) -> bytes:
    """An EVM address as a LayerZero bytes32 peer/sender."""
    return b"\x00" * 12 + bytes.fromhex(address.removeprefix("0x"))


@dataclass(frozen=True)
class BridgeMessage:
    """The bridge's message (contracts/src/bridge/BridgeMessages.sol)."""

    kind: int  # 1 CREDIT (remote -> home), 2 RELEASE (home -> remote)
    account: str
    amount: int  # home collateral units (WAD)

    KINDS = {1: "credit", 2: "release"}

    @classmethod
    def decode(cls, message: bytes) -> BridgeMessage:
        if len(message) != 96:
            raise MalformedPacket(f"bridge message of {len(message)} bytes, expected 96")
        kind, account, amount = abi_decode(["uint16", "address", "uint256"], message)
        return cls(int(kind), to_checksum_address(account), int(amount))

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.KINDS.get(self.kind, str(self.kind)),
            "account": self.account,
            "amount": str(self.amount),
        }
