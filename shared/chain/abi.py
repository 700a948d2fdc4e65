"""Contract ABIs and bytecode, read from the Foundry build output (never copied by hand).

Artifacts live at ``contracts/out/<Name>.sol/<Name>.json``. When they are missing, the
contracts are built once with ``scripts/forge.sh build``. ``PERPEX_CONTRACTS_OUT`` points at
another build output directory (for example one baked into a container image).
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import threading
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

REPO_ROOT = Path(__file__).resolve().parents[2]
CONTRACTS_DIR = REPO_ROOT / "contracts"
FORGE_SH = REPO_ROOT / "scripts" / "forge.sh"
OUT_ENV = "PERPEX_CONTRACTS_OUT"

# Contracts the services use, by artifact name.
PROTOCOL_CONTRACTS = (
    "PositionManager",
    "PositionNFT",
    "Vault",
    "CollateralToken",
    "PriceOracle",
    "VirtualAMM",
    "SettableFeed",
)

_build_lock = threading.Lock()


class ArtifactNotFoundError(FileNotFoundError):
    """A contract artifact is missing from the build output (and building did not produce it)."""


class ContractBuildError(RuntimeError):
    """`scripts/forge.sh build` failed."""


@dataclass(frozen=True)
class Artifact:
    name: str
    abi: list[dict[str, Any]]
    bytecode: str  # creation code, 0x-prefixed
    deployed_bytecode: str
    path: Path


def out_dir() -> Path:
    override = os.environ.get(OUT_ENV)
    return Path(override) if override else CONTRACTS_DIR / "out"


def artifact_path(name: str, source: str | None = None) -> Path:
    """Path of the artifact of contract `name` (declared in `source`, default `<name>.sol`)."""
    return out_dir() / (source or f"{name}.sol") / f"{name}.json"


def build_contracts(timeout: float = 600.0) -> None:
    """Run `scripts/forge.sh build` (serialized across threads and processes)."""
    if not FORGE_SH.exists():
        raise ContractBuildError(f"{FORGE_SH} not found: cannot build the contracts")
    lock_dir = CONTRACTS_DIR / "cache"
    lock_dir.mkdir(parents=True, exist_ok=True)
    with _build_lock, open(lock_dir / ".perpex-build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        proc = subprocess.run(
            [str(FORGE_SH), "build"],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-30:])
        raise ContractBuildError(f"scripts/forge.sh build failed (exit {proc.returncode}):\n{tail}")


def _find(name: str, source: str | None) -> Path | None:
    path = artifact_path(name, source)
    if path.exists():
        return path
    if source is None and out_dir().is_dir():
        matches = sorted(out_dir().glob(f"*.sol/{name}.json"))
        if matches:
            return matches[0]
    return None


@cache
def load_artifact(name: str, source: str | None = None, build_if_missing: bool = True) -> Artifact:
    """Load the artifact of contract `name`; builds the contracts first if it is missing."""
    path = _find(name, source)
    if path is None and build_if_missing and OUT_ENV not in os.environ:
        build_contracts()
        path = _find(name, source)
    if path is None:
        raise ArtifactNotFoundError(
            f"contract artifact {name!r} not found at {artifact_path(name, source)}"
            + (
                f" ({OUT_ENV}={os.environ[OUT_ENV]})"
                if OUT_ENV in os.environ
                else "; run scripts/forge.sh build"
            )
        )
    data = json.loads(path.read_text())
    bytecode = data.get("bytecode", {}).get("object", "0x")
    deployed = data.get("deployedBytecode", {}).get("object", "0x")
    return Artifact(
        name=name,
        abi=data["abi"],
        bytecode=bytecode if bytecode.startswith("0x") else "0x" + bytecode,
        deployed_bytecode=deployed if deployed.startswith("0x") else "0x" + deployed,
        path=path,
    )


def load_abi(name: str) -> list[dict[str, Any]]:
    return load_artifact(name).abi


def event_abi(contract: str, event: str) -> dict[str, Any]:
    """The ABI entry of `event` in `contract` (raises KeyError when absent)."""
    for entry in load_abi(contract):
        if entry.get("type") == "event" and entry.get("name") == event:
            return entry
    raise KeyError(f"event {event} not in {contract} ABI")


def event_signature(contract: str, event: str) -> str:
    """`Name(type,...)` of an event, from the build output (tuples not used by our events)."""
    entry = event_abi(contract, event)
    return f"{event}({','.join(str(i['type']) for i in entry['inputs'])})"


def event_topic(contract: str, event: str) -> str:
    """topic0 (0x-hex) of an event, from the build output: never a hand-written signature."""
    from eth_utils import keccak

    return "0x" + keccak(text=event_signature(contract, event)).hex()
