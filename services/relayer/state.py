"""The relayer's small state file: how far each source chain has been scanned and which packets
seen there are not delivered yet. Written atomically (temporary file, fsync, rename) before the
relayer acts on it.

The chain stays the source of truth: whether a packet is verified or delivered is read from the
destination endpoint before every step, and a packet is verified only after its transaction is
found again on the source chain. The file only saves rescanning; losing it costs a rescan from
the deployment's start blocks, never a packet and never a second delivery. A cursor whose block
hash the source chain no longer has (a reorg deeper than CONFIRMATIONS, or a fresh chain at the
same addresses) is forgotten the same way.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.relayer.packets import Packet

STATE_VERSION = 2


@dataclass(frozen=True)
class Seen:
    """A packet as it was seen on its source chain: re-checked there before it is verified."""

    packet: Packet
    tx_hash: str
    block_number: int


@dataclass
class LaneState:
    start: int  # the block before the source's bridge was deployed
    scanned_to: int  # last source block whose PacketSent logs are in `pending` (or delivered)
    scanned_hash: str | None = None  # that block's hash: another chain, or a reorg under it
    pending: dict[str, Seen] = field(default_factory=dict)  # guid hex -> packet

    def reset(self) -> None:
        """Forget everything: rescan from the deployment's start block."""
        self.scanned_to, self.scanned_hash = self.start, None
        self.pending.clear()


@dataclass
class RelayerState:
    path: Path
    # fingerprint of the deployment this state belongs to (both endpoints and apps)
    deployment_key: str
    lanes: dict[str, LaneState] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path, deployment_key: str, starts: dict[str, int]) -> RelayerState:
        """The saved state for this deployment, or a fresh one scanning from `starts`
        (lane name -> first block - 1)."""
        state = cls(path, deployment_key)
        data: dict[str, Any] = {}
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            pass
        except (OSError, ValueError):
            data = {}  # unreadable: rescan (the chain says what is done)
        if data.get("version") != STATE_VERSION or data.get("deployment") != deployment_key:
            data = {}
        saved = data.get("lanes", {})
        for lane, start in starts.items():
            entry = saved.get(lane) or {}
            pending = {}
            for guid, seen in (entry.get("pending") or {}).items():
                raw = bytes.fromhex(seen["packet"].removeprefix("0x"))
                pending[guid] = Seen(Packet.decode(raw), seen["tx"], int(seen["block"]))
            state.lanes[lane] = LaneState(
                start, int(entry.get("scanned_to", start)), entry.get("scanned_hash"), pending
            )
        return state

    def save(self) -> None:
        data = {
            "version": STATE_VERSION,
            "deployment": self.deployment_key,
            "lanes": {
                name: {
                    "scanned_to": lane.scanned_to,
                    "scanned_hash": lane.scanned_hash,
                    "pending": {
                        g: {
                            "packet": "0x" + s.packet.raw.hex(),
                            "tx": s.tx_hash,
                            "block": s.block_number,
                        }
                        for g, s in lane.pending.items()
                    },
                }
                for name, lane in self.lanes.items()
            },
        }
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.")
        try:
            with os.fdopen(fd, "w") as fh:
                json.dump(data, fh)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
