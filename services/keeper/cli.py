"""`perpex keeper`: run the liquidation keeper.

Exit 0 after SIGTERM/SIGINT (new work stops, broadcast liquidations get SHUTDOWN_TIMEOUT_S to
be mined, offsets are committed); 2 on bad configuration (every bad field listed, keys never
printed); 1 on another fatal error.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from services.keeper.settings import KeeperSettings, load_keeper_settings
from shared.config import EXIT_CONFIG_ERROR, ConfigError, exit_on_config_error
from shared.service import configure_logging, service_scope
from shared.telemetry import setup_telemetry

log = logging.getLogger("perpex.keeper")


async def run_service(settings: KeeperSettings, health_port: int | None = None) -> int:
    from services.keeper.app import Keeper

    on_stop = "no new liquidations; waiting for pending ones, then exiting"
    async with service_scope(log, on_stop, health_port) as (stop, state):
        keeper: Keeper | None = None
        try:
            keeper = Keeper(settings, state)
            await keeper.start()
            await keeper.run(stop)
            return 0
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return EXIT_CONFIG_ERROR
        except Exception:
            log.exception("keeper failed")
            return 1
        finally:
            if keeper is not None and not keeper.stopped:
                await keeper.shutdown()


@click.command("keeper")
def keeper() -> None:
    """Liquidate every position that becomes liquidatable, exactly once."""
    settings = exit_on_config_error(load_keeper_settings)
    configure_logging(settings.log_level, {"web3": logging.WARNING})
    setup_telemetry("perpex-keeper")
    sys.exit(asyncio.run(run_service(settings)))
