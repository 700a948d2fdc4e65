"""`perpex indexer`: run the indexer service.

SIGTERM/SIGINT: the chunk being written is finished (its transaction commits), the outbox gets a
short chance to flush, and the process exits 0. Exit 2 on bad configuration, 1 on a reorg deeper
than REORG_WINDOW or another fatal error.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import click

from services.indexer.settings import IndexerSettings, load_indexer_settings
from shared.config import ConfigError, exit_on_config_error
from shared.health import HealthState
from shared.service import configure_logging, service_scope
from shared.telemetry import setup_telemetry

log = logging.getLogger("perpex.indexer")


async def run_service(settings: IndexerSettings, until_caught_up: bool = False) -> int:
    from services.indexer.app import StoppedWaiting, open_app
    from services.indexer.sync import ReorgTooDeepError

    async with service_scope(log, "finishing the current chunk, then exiting") as (stop, state):
        try:
            async with open_app(settings, stop=stop) as app:
                state._status = app.status
                watchdog = asyncio.create_task(_watch(app, state, stop), name="watchdog")
                try:
                    await app.run(stop, until_caught_up=until_caught_up)
                finally:
                    watchdog.cancel()
            log.info("indexer stopped")
            return 0
        except StoppedWaiting as exc:
            log.info("%s", exc)
            return 0
        except ReorgTooDeepError as exc:
            log.critical("%s", exc)
            return 1
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2


async def _watch(app: object, state: HealthState, stop: asyncio.Event) -> None:
    from services.indexer.app import IndexerApp

    assert isinstance(app, IndexerApp)
    wedged_after = max(120.0, 20 * app.settings.poll_interval)
    while not stop.is_set():
        indexer = app.indexer
        state.alive = time.monotonic() - indexer.heartbeat < wedged_after
        if indexer.ready:
            state.set_ready(True, f"synced to block {indexer.last_block}")
        else:
            state.set_ready(False, "syncing not started or failing")
        await asyncio.sleep(1.0)


@click.command("indexer")
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="Exit 0 once synced to head - CONFIRMATIONS and the outbox is drained.",
)
def indexer(until_caught_up: bool) -> None:
    """Index PositionManager/PositionNFT events into PostgreSQL and Kafka."""
    settings = exit_on_config_error(load_indexer_settings)
    # the drainer logs broker outages itself
    configure_logging(settings.log_level, {"aiokafka": logging.CRITICAL})
    setup_telemetry("perpex-indexer")
    code = asyncio.run(run_service(settings, until_caught_up))
    sys.exit(code)
