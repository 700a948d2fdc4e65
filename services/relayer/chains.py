"""The relayer's view of the two chains and of each lane between them (plain data), and how
a chain's clients are built from the settings."""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass
from typing import Any

from web3 import AsyncWeb3
from web3.contract import AsyncContract

from services.relayer.settings import RelayerSettings
from services.relayer.state import LaneState
from shared.chain.abi import load_abi
from shared.chain.deployment import BridgeDeployment, BridgeSide
from shared.chain.errors import ErrorDecoder
from shared.chain.tx import TxSender

ERROR_SOURCES = (
    "EndpointV2",
    "SimpleMessageLib",
    "CollateralBridge",
    "CollateralDepositor",
    "Vault",
)


class PacketStatus(enum.Enum):
    UNVERIFIED = "unverified"
    VERIFIED = "verified"
    DELIVERED = "delivered"  # or skipped / burnt by the OApp's delegate: nothing left to do
    NILIFIED = "nilified"  # the delegate nilified it: it can be verified again only by them
    CONFLICT = "conflict"  # another payload is verified under this nonce


@dataclass
class Chain:
    name: str
    side: BridgeSide
    w3: AsyncWeb3
    sender: TxSender
    endpoint: AsyncContract
    lib: AsyncContract | None  # the local message library (None: LayerZero's own stack)


@dataclass
class Lane:
    src: Chain
    dst: Chain
    state: LaneState
    idle: bool = False
    retry_at: float = 0.0
    failures: int = 0
    verified: int = 0
    delivered: int = 0
    last_error: str | None = None
    head: int = 0

    @property
    def name(self) -> str:
        return f"{self.src.name}->{self.dst.name}"

    def status(self) -> dict[str, Any]:
        return {
            "scanned_to": self.state.scanned_to,
            "source_head": self.head,
            "pending": len(self.state.pending),
            "verified": self.verified,
            "delivered": self.delivered,
            "last_error": self.last_error,
        }


@dataclass
class RelayerConfig:
    confirmations: int = 0
    log_span: int = 2000
    poll_s: float = 1.0
    backoff_initial_s: float = 0.5
    backoff_max_s: float = 30.0
    max_retries: int = 5


def deployment_key(bridge: BridgeDeployment) -> str:
    """Fingerprint of the bridge a state file belongs to."""
    parts = [
        str(x) for s in (bridge.home, bridge.remote) for x in (s.chain_id, s.eid, s.endpoint, s.app)
    ]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def error_decoder() -> ErrorDecoder:
    return ErrorDecoder([load_abi(name) for name in ERROR_SOURCES])


def make_chain(name: str, side: BridgeSide, w3: AsyncWeb3, settings: RelayerSettings) -> Chain:
    sender = TxSender(
        w3,
        settings.wallet,
        side.chain_id,
        gas_multiplier=settings.gas_multiplier,
        max_retries=settings.max_retries,
        error_decoder=error_decoder(),
        confirm_timeout_s=settings.relayer_confirm_timeout_s,
        replace_after_s=settings.relayer_replace_after_s,
        poll_s=min(0.25, settings.poll_interval),
        backoff_max_s=settings.relayer_backoff_max_s,
    )
    endpoint = w3.eth.contract(address=side.endpoint, abi=load_abi("EndpointV2"))
    lib = None
    if int(side.message_lib, 16) != 0:
        lib = w3.eth.contract(address=side.message_lib, abi=load_abi("SimpleMessageLib"))
    return Chain(name, side, w3, sender, endpoint, lib)
