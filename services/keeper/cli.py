"""`perpex keeper`: run the liquidation keeper.

Exit 0 after SIGTERM/SIGINT (new work stops, broadcast liquidations get SHUTDOWN_TIMEOUT_S to
be mined, offsets are committed), also while it is still waiting for its dependencies; 2 on bad
configuration (every bad field listed, keys never printed; a CHAIN_ID the node contradicts;
MARKETS naming a pair the PositionManager does not list); 1 when one of its loops dies on an
unexpected error, logged as one line. A dependency down or failing transiently at start is
waited for, never fatal.
"""

from __future__ import annotations

import logging

import click

from services.keeper.settings import KeeperSettings, load_keeper_settings
from shared.service import Service, run_main, run_service

log = logging.getLogger("perpex.keeper")
ON_STOP = "no new liquidations; waiting for pending ones, then exiting"


async def run_keeper(settings: KeeperSettings, health_port: int | None = None) -> int:
    """The keeper in the service skeleton (shared/service.py); its exit status."""
    from services.keeper.app import Keeper

    async def main(svc: Service) -> None:
        keeper = Keeper(settings, svc.health)
        try:
            await keeper.start(svc.stop)
            await keeper.run(svc.stop)
        finally:
            if not keeper.stopped:
                await keeper.shutdown()

    port = settings.health_port if health_port is None else health_port
    return await run_service("keeper", log, ON_STOP, main, port)


@click.command("keeper")
def keeper() -> None:
    """Liquidate every position that becomes liquidatable, exactly once."""
    # aiokafka logs broker trouble with tracebacks; the consumer and the dependency watch say it
    # in one line each ("broker at ... unreachable", "kafka: ...; retrying")
    run_main(
        "keeper",
        load_keeper_settings,
        run_keeper,
        {"web3": logging.WARNING, "aiokafka": logging.CRITICAL},
    )
