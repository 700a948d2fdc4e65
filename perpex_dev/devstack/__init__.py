"""The embedded local stack: a real anvil node, a private PostgreSQL cluster and a
Kafka-protocol broker (Tansu), started on 127.0.0.1 from binaries the bootstrap installed."""

from perpex_dev.devstack.components import Anvil, Broker, Component, Postgres, StackConfig
from perpex_dev.devstack.stack import LocalStack

__all__ = ["Anvil", "Broker", "Component", "LocalStack", "Postgres", "StackConfig"]
