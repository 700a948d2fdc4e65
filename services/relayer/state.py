"""The relayer's small state file: how far each source chain has been scanned and which packets
seen there are not delivered yet. Written atomically (temporary file, fsync, rename) before the
relayer acts on it.

The chain stays the source of truth: whether a packet is verified or delivered is read from the
destination endpoint before every step. The file only saves rescanning; losing it costs a rescan
from the deployment's start blocks, never a packet and never a second delivery.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from services.relayer.packets import Packet

STATE_VERSION = 1


@dataclass
class LaneState:
    scanned_to: int  # last source block whose PacketSent logs are in `pending` (or delivered)
    pending: dict[str, Packet] = field(default_factory=dict)  # guid hex -> packet


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
            for guid, raw in (entry.get("pending") or {}).items():
                pending[guid] = Packet.decode(bytes.fromhex(raw.removeprefix("0x")))
            state.lanes[lane] = LaneState(int(entry.get("scanned_to", start)), pending)
        return state

    def save(self) -> None:
        data = {
            "version": STATE_VERSION,
            "deployment": self.deployment_key,
            "lanes": {
                name: {
                    "scanned_to": lane.scanned_to,
                    "pending": {g: "0x" + p.raw.hex() for g, p in lane.pending.items()},
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
