"""The three local components. Each starts a real server on 127.0.0.1 and checks its health
with a real request: eth_chainId for anvil, `SELECT 1` for PostgreSQL, a metadata request for
the broker."""

from __future__ import annotations

import asyncio
import os
import pwd
import shutil
import signal
import stat
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import httpx

from perpex_dev.devstack import paths
from perpex_dev.devstack.process import PidFile, PidRecord, spawn, terminate


@dataclass
class StackConfig:
    data_dir: Path = paths.DEFAULT_DATA_DIR
    host: str = "127.0.0.1"
    anvil_port: int = 58545
    postgres_port: int = 55432
    kafka_port: int = 59092
    chain_id: int = 31337
    block_time: float | None = None  # None: automine
    db_name: str = "perpex"
    db_user: str = "perpex"
    durable: bool = True  # False: fsync off (tests)
    # the second chain of the cross-chain bridge (docs/bridge.md); None: not part of the stack
    remote_anvil_port: int | None = None
    remote_chain_id: int = 31338

    @classmethod
    def from_env(cls) -> StackConfig:
        env = os.environ
        block_time = env.get("PERPEX_BLOCK_TIME")
        remote_port = env.get("PERPEX_REMOTE_ANVIL_PORT")
        return cls(
            data_dir=Path(env.get("PERPEX_DATA_DIR", str(paths.DEFAULT_DATA_DIR))),
            anvil_port=int(env.get("PERPEX_ANVIL_PORT", "58545")),
            postgres_port=int(env.get("PERPEX_PG_PORT", "55432")),
            kafka_port=int(env.get("PERPEX_KAFKA_PORT", "59092")),
            block_time=float(block_time) if block_time else None,
            remote_anvil_port=int(remote_port) if remote_port else None,
        )


@dataclass
class Health:
    ok: bool
    detail: str


class ComponentError(RuntimeError):
    pass


class Component(ABC):
    name: str

    def __init__(self, config: StackConfig):
        self.config = config
        self.dir = config.data_dir / self.name
        self.pidfile = PidFile(config.data_dir / "pids" / f"{self.name}.json")
        self.log_path = config.data_dir / "logs" / f"{self.name}.log"

    # ---- to implement ----
    @property
    @abstractmethod
    def url(self) -> str: ...

    @abstractmethod
    def argv(self) -> list[str]: ...

    @abstractmethod
    def check(self) -> Health:
        """One real request against the server."""

    def prepare(self) -> None:  # noqa: B027 - optional hook
        """One-time set-up before the first start (e.g. initdb)."""

    def after_ready(self) -> None:  # noqa: B027 - optional hook
        """Run once the server answers (e.g. create the database)."""

    def user(self) -> str | None:
        return None

    def env(self) -> dict[str, str] | None:
        return None

    # ---- lifecycle ----
    def record(self) -> PidRecord | None:
        record = self.pidfile.read()
        return record if record and record.alive() else None

    def health(self) -> Health:
        if self.record() is None:
            return Health(False, "not running")
        try:
            return self.check()
        except Exception as exc:  # any failure of the probe is "unhealthy", with its reason
            return Health(False, f"{type(exc).__name__}: {exc}")

    def start(self, timeout: float = 60.0) -> None:
        if self.record() is not None:
            if self.health().ok:
                return
            self.wait_ready(timeout)
            return
        self.dir.mkdir(parents=True, exist_ok=True)
        self.prepare()
        argv = self.argv()
        proc = spawn(argv, self.log_path, env=self.env(), user=self.user())
        self.pidfile.write(proc, " ".join(argv))
        self.wait_ready(timeout, proc)
        self.after_ready()

    def wait_ready(self, timeout: float, proc: subprocess.Popen[bytes] | None = None) -> None:
        deadline = time.monotonic() + timeout
        last = Health(False, "not checked")
        while time.monotonic() < deadline:
            if proc is not None and proc.poll() is not None:
                raise ComponentError(
                    f"{self.name} exited with code {proc.returncode}; log tail:\n{self.log_tail()}"
                )
            try:
                last = self.check()
            except Exception as exc:
                last = Health(False, f"{type(exc).__name__}: {exc}")
            if last.ok:
                return
            time.sleep(0.1)
        raise ComponentError(
            f"{self.name} not ready after {timeout:.0f}s ({last.detail}); log tail:\n{self.log_tail()}"
        )

    # the signal that stops the process promptly and cleanly
    stop_signal: signal.Signals = signal.SIGTERM

    def stop(self) -> bool:
        record = self.pidfile.read()
        gone = True if record is None else terminate(record, sig=self.stop_signal)
        if gone:
            self.pidfile.clear()
        return gone

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"


class Anvil(Component):
    name = "anvil"

    @property
    def port(self) -> int:
        return self.config.anvil_port

    @property
    def chain_id(self) -> int:
        return self.config.chain_id

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def argv(self) -> list[str]:
        argv = [
            str(paths.anvil_binary()),
            "--host", self.config.host,
            "--port", str(self.port),
            "--chain-id", str(self.chain_id),
            # 0 deployer, 1 keeper, 2 funding, 3-9 traders, 10 bridge relayer (accounts.py)
            "--accounts", "11",
            "--balance", "1000000",
        ]  # fmt: skip
        if self.config.block_time:
            argv += ["--block-time", str(self.config.block_time)]
        return argv

    def check(self) -> Health:
        resp = httpx.post(
            self.url,
            json={"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []},
            timeout=2.0,
        )
        chain_id = int(resp.json()["result"], 16)
        if chain_id != self.chain_id:
            return Health(False, f"chain id {chain_id}, expected {self.chain_id}")
        return Health(True, f"chain id {chain_id}")


class RemoteAnvil(Anvil):
    """The bridge's second chain (chain id 31338): where collateral is locked before it is
    credited on the home chain (docs/bridge.md)."""

    name = "anvil-remote"

    @property
    def port(self) -> int:
        if self.config.remote_anvil_port is None:
            raise ComponentError("no port for the remote anvil (remote_anvil_port)")
        return self.config.remote_anvil_port

    @property
    def chain_id(self) -> int:
        return self.config.remote_chain_id


class Postgres(Component):
    # SIGTERM is PostgreSQL's "smart" shutdown, which waits for every client to leave (a
    # dashboard's idle pool holds on for minutes): SIGINT, the fast one, ends their sessions
    stop_signal = signal.SIGINT

    name = "postgres"

    def __init__(self, config: StackConfig):
        super().__init__(config)
        self.cluster_dir = _postgres_accessible_dir(self.dir / "cluster")

    @property
    def url(self) -> str:
        c = self.config
        return f"postgresql://{c.db_user}@{c.host}:{c.postgres_port}/{c.db_name}"

    @property
    def admin_url(self) -> str:
        c = self.config
        return f"postgresql://{c.db_user}@{c.host}:{c.postgres_port}/postgres"

    def user(self) -> str | None:
        return "postgres" if os.geteuid() == 0 else None

    def prepare(self) -> None:
        bindir = paths.postgres_bindir()
        socket_dir = self.cluster_dir / "socket"
        if (self.cluster_dir / "data" / "PG_VERSION").exists():
            return
        self.cluster_dir.mkdir(parents=True, exist_ok=True)
        self._chown(self.cluster_dir)
        subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(self.cluster_dir / "data"),
                "-U",
                self.config.db_user,
                "--auth=trust",
                "-E",
                "UTF8",
                "--no-sync",
            ],
            check=True,
            capture_output=True,
            user=self.user(),
        )
        socket_dir.mkdir(exist_ok=True)
        self._chown(socket_dir)
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.log_path.touch()
        self._chown(self.log_path)

    def _chown(self, path: Path) -> None:
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            os.chown(path, pw.pw_uid, pw.pw_gid)

    def argv(self) -> list[str]:
        argv = [
            str(paths.postgres_bindir() / "postgres"),
            "-D", str(self.cluster_dir / "data"),
            "-p", str(self.config.postgres_port),
            "-k", str(self.cluster_dir / "socket"),
            "-c", f"listen_addresses={self.config.host}",
            "-c", "max_connections=200",
        ]  # fmt: skip
        if not self.config.durable:
            argv += [
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ]
        return argv

    def check(self) -> Health:
        return asyncio.run(self._check())

    async def _check(self) -> Health:
        import asyncpg

        conn = await asyncpg.connect(self.admin_url, timeout=2)
        try:
            version = await conn.fetchval("SHOW server_version")
        finally:
            await conn.close()
        return Health(True, f"PostgreSQL {version}")

    def after_ready(self) -> None:
        asyncio.run(self._create_db())

    async def _create_db(self) -> None:
        import asyncpg

        conn = await asyncpg.connect(self.admin_url, timeout=5)
        try:
            exists = await conn.fetchval(
                "SELECT 1 FROM pg_database WHERE datname = $1", self.config.db_name
            )
            if not exists:
                await conn.execute(f'CREATE DATABASE "{self.config.db_name}"')
        finally:
            await conn.close()


def _postgres_accessible_dir(wanted: Path) -> Path:
    """PostgreSQL refuses to run as root, so as root it runs as `postgres`, which must be able
    to reach its data directory. When an ancestor of `wanted` is closed to other users (e.g. a
    0700 temp folder), the cluster lives in a private folder under /tmp instead, and `wanted`
    becomes a symlink to it."""
    if os.geteuid() != 0:
        return wanted
    if wanted.is_symlink():
        return wanted.resolve()
    for parent in wanted.absolute().parents:
        if parent.exists() and not (parent.stat().st_mode & stat.S_IXOTH):
            import hashlib

            digest = hashlib.sha256(str(wanted.absolute()).encode()).hexdigest()[:12]
            target = Path("/tmp") / f"perpex-pg-{digest}"
            target.mkdir(mode=0o755, exist_ok=True)
            wanted.parent.mkdir(parents=True, exist_ok=True)
            if wanted.exists() and not wanted.is_symlink():
                shutil.rmtree(wanted)
            wanted.symlink_to(target)
            return target
    return wanted


class Broker(Component):
    name = "kafka"

    @property
    def url(self) -> str:
        return f"{self.config.host}:{self.config.kafka_port}"

    def argv(self) -> list[str]:
        listener = f"tcp://{self.config.host}:{self.config.kafka_port}"
        return [
            str(paths.tansu_binary()),
            "broker",
            "--listener-url", listener,
            "--advertised-listener-url", listener,
            "--storage-engine", "memory://tansu/",
        ]  # fmt: skip

    def env(self) -> dict[str, str]:
        # Tansu reads its own settings (and OTEL_*) from the environment: give it a clean one.
        keep = ("PATH", "HOME", "LANG", "TZ")
        return {k: v for k, v in os.environ.items() if k in keep}

    def check(self) -> Health:
        return asyncio.run(self._check())

    async def _check(self) -> Health:
        from aiokafka.admin import AIOKafkaAdminClient

        admin = AIOKafkaAdminClient(bootstrap_servers=self.url, request_timeout_ms=2000)
        await asyncio.wait_for(admin.start(), 5)
        try:
            topics = await asyncio.wait_for(admin.list_topics(), 5)
        finally:
            await admin.close()
        return Health(True, f"Kafka protocol, {len(topics)} topics")
