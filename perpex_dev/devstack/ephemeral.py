"""A throw-away local stack on free ports in a temporary folder: for tests and benchmarks."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from perpex_dev.devstack.components import StackConfig
from perpex_dev.devstack.ports import free_ports
from perpex_dev.devstack.stack import LocalStack


@contextmanager
def ephemeral_stack(
    components: tuple[str, ...] = ("anvil", "postgres", "kafka"),
    block_time: float | None = None,
    data_dir: Path | None = None,
) -> Iterator[LocalStack]:
    """`components` among "anvil", "postgres", "kafka" and "anvil-remote" (the bridge's second
    chain, chain id 31338)."""
    owned = data_dir is None
    root = data_dir or Path(tempfile.mkdtemp(prefix="perpex-stack-"))
    if owned:
        # mkdtemp makes the folder 0700; PostgreSQL, run as `postgres` when we are root, could
        # not reach its cluster inside and would get one under /tmp instead (which outlives us)
        root.chmod(0o755)
    anvil_port, pg_port, kafka_port, remote_port = free_ports(4)
    config = StackConfig(
        data_dir=root,
        anvil_port=anvil_port,
        postgres_port=pg_port,
        kafka_port=kafka_port,
        block_time=block_time,
        durable=False,
        remote_anvil_port=remote_port if "anvil-remote" in components else None,
    )
    stack = LocalStack(config)
    wanted = [c for c in stack.components if c.name in components]
    try:
        for comp in wanted:
            comp.start()
        yield stack
    finally:
        for comp in reversed(wanted):
            comp.stop()
        if owned:
            _remove_tree_and_link_targets(root)


def _remove_tree_and_link_targets(root: Path) -> None:
    """Remove `root`, and what its symlinks point at outside it (a PostgreSQL cluster moved to
    /tmp when `root` was not reachable by the `postgres` user)."""
    for path in root.rglob("*"):
        if path.is_symlink():
            target = path.resolve()
            if target.name.startswith("perpex-pg-") and not target.is_relative_to(root):
                shutil.rmtree(target, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
