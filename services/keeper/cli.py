"""`perpex keeper`: run the liquidation keeper.

Exit 0 after SIGTERM/SIGINT (new work stops, broadcast liquidations get SHUTDOWN_TIMEOUT_S to
be mined, offsets are committed); 2 on bad configuration (every bad field listed, keys never
printed); 1 on another fatal error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

import click

from services.keeper.settings import KeeperSettings, load_keeper_settings
from shared.config import EXIT_CONFIG_ERROR, ConfigError, exit_on_config_error
from shared.health import HealthState, serve_health
from shared.telemetry import setup_telemetry

log = logging.getLogger("perpex.keeper")


async def run_service(settings: KeeperSettings, health_port: int | None = None) -> int:
    from services.keeper.app import Keeper

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, _on_signal, stop, sig)
    state = HealthState()
    health_task = asyncio.create_task(serve_health(state, health_port), name="health")
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
        health_task.cancel()
        with contextlib.suppress(BaseException):
            await health_task


def _on_signal(stop: asyncio.Event, sig: signal.Signals) -> None:
    log.info("%s received: no new liquidations; waiting for pending ones, then exiting", sig.name)
    stop.set()


@click.command("keeper")
def keeper() -> None:
    """Liquidate every position that becomes liquidatable, exactly once."""
    settings = exit_on_config_error(load_keeper_settings)
    logging.basicConfig(
        level=settings.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    logging.getLogger("web3").setLevel(logging.WARNING)
    setup_telemetry("perpex-keeper")
    sys.exit(asyncio.run(run_service(settings)))
