"""The three components together, in start order."""

from __future__ import annotations

from shared.devstack.components import Anvil, Broker, Component, Health, Postgres, StackConfig


class LocalStack:
    def __init__(self, config: StackConfig | None = None):
        self.config = config or StackConfig.from_env()
        self.anvil = Anvil(self.config)
        self.postgres = Postgres(self.config)
        self.broker = Broker(self.config)

    @property
    def components(self) -> list[Component]:
        return [self.anvil, self.postgres, self.broker]

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
        return {
            "RPC_URL": self.anvil.url,
            "CHAIN_ID": str(self.config.chain_id),
            "DB_URI": self.postgres.url,
            "KAFKA_BOOTSTRAP_SERVERS": self.broker.url,
        }
