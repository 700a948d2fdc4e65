"""The components together, in start order: anvil, PostgreSQL, the broker, and the bridge's
second anvil when the config gives it a port."""

from __future__ import annotations

from perpex_dev.devstack.components import (
    Anvil,
    Broker,
    Component,
    Health,
    Postgres,
    RemoteAnvil,
    StackConfig,
)


class LocalStack:
    def __init__(self, config: StackConfig | None = None):
        self.config = config or StackConfig.from_env()
        self.anvil = Anvil(self.config)
        self.postgres = Postgres(self.config)
        self.broker = Broker(self.config)
        self.remote_anvil = RemoteAnvil(self.config)

    @property
    def components(self) -> list[Component]:
        remote = [self.remote_anvil] if self.config.remote_anvil_port is not None else []
        return [self.anvil, self.postgres, self.broker, *remote]

    def up(self) -> None:
        started: list[Component] = []
        try:
            for comp in self.components:
                comp.start()
                started.append(comp)
        except Exception:
            for comp in reversed(started):
                comp.stop()
            raise

    def down(self) -> dict[str, bool]:
        return {comp.name: comp.stop() for comp in reversed(self.components)}

    def status(self) -> list[tuple[Component, Health]]:
        return [(comp, comp.health()) for comp in self.components]

    def env(self) -> dict[str, str]:
        """Service configuration pointing at this stack."""
        env = {
            "RPC_URL": self.anvil.url,
            "CHAIN_ID": str(self.config.chain_id),
            "DB_URI": self.postgres.url,
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.url,
        }
        if self.config.remote_anvil_port is not None:
            env["REMOTE_RPC_URL"] = self.remote_anvil.url
            env["REMOTE_CHAIN_ID"] = str(self.config.remote_chain_id)
        return env
