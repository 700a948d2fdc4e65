"""`perpex keeper`: run the liquidation keeper.

Exit 0 after SIGTERM/SIGINT (new work stops, broadcast liquidations get SHUTDOWN_TIMEOUT_S to
be mined, offsets are committed), also while it is still waiting for its dependencies; 2 on bad
configuration (every bad field listed, keys never printed; a CHAIN_ID the node contradicts;
MARKETS naming a pair the PositionManager does not list); 1 when one of its loops dies on an
unexpected error, logged as one line. A dependency down or failing transiently at start is
waited for, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from services.keeper.settings import KeeperSettings, load_keeper_settings
from shared.config import exit_on_config_error
from shared.service import configure_logging, run_guarded, service_scope
from shared.telemetry import setup_telemetry

log = logging.getLogger("perpex.keeper")


async def run_service(settings: KeeperSettings, health_port: int | None = None) -> int:
    from services.keeper.app import Keeper

    on_stop = "no new liquidations; waiting for pending ones, then exiting"
    async with service_scope(log, on_stop, health_port) as (stop, state):
        keeper: Keeper | None = None

        async def main() -> None:
            nonlocal keeper
            keeper = Keeper(settings, state)
            await keeper.start(stop)
            await keeper.run(stop)

        try:
            return await run_guarded(log, "keeper", main)
        finally:
            if keeper is not None and not keeper.stopped:
                await keeper.shutdown()


@click.command("keeper")
def keeper() -> None:
    """Liquidate every position that becomes liquidatable, exactly once."""
    settings = exit_on_config_error(load_keeper_settings)
    # aiokafka logs broker trouble with tracebacks; the consumer and the dependency watch say it
    # in one line each ("broker at ... unreachable", "kafka: ...; retrying")
    configure_logging(settings.log_level, {"web3": logging.WARNING, "aiokafka": logging.CRITICAL})
    setup_telemetry("perpex-keeper")
    sys.exit(asyncio.run(run_service(settings)))
