"""`perpex indexer`: run the indexer service.

SIGTERM/SIGINT: the chunk being written is finished (its transaction commits), the outbox gets a
short chance to flush, and the process exits 0. At start it waits (with backoff, logging what
for, not ready meanwhile) for the RPC node and PostgreSQL; a start-up step that fails
transiently is retried. Exit 2 on bad configuration (also a CHAIN_ID the node contradicts,
MARKETS naming a pair the PositionManager does not list, a database that follows other
contracts), 1 on a reorg deeper than REORG_WINDOW or another fatal error, logged as one line.
"""

from __future__ import annotations

import asyncio
import logging
import sys
import time

import click

from services.indexer.settings import IndexerSettings, load_indexer_settings
from shared.config import exit_on_config_error
from shared.dependencies import StopRequested, run_opened
from shared.health import HealthState
from shared.service import configure_logging, run_guarded, service_scope
from shared.telemetry import setup_telemetry

log = logging.getLogger("perpex.indexer")


async def run_service(settings: IndexerSettings, until_caught_up: bool = False) -> int:
    from services.indexer.app import dependencies

    async with service_scope(log, "finishing the current chunk, then exiting") as (stop, state):
        deps = dependencies(settings, state)

        async def main() -> None:
            state.set_ready(False, "starting: waiting for RPC and PostgreSQL")
            if not await deps.wait(stop):
                raise StopRequested("stopped while waiting for dependencies")
            watch = deps.start_watch(stop)
            try:
                await _open_and_run(settings, state, stop, until_caught_up)
            finally:
                watch.cancel()

        return await run_guarded(log, "indexer", main)


async def _open_and_run(
    settings: IndexerSettings, state: HealthState, stop: asyncio.Event, until_caught_up: bool
) -> None:
    """Open the app (connect, migrate, take the writer lock; retried while it fails
    transiently) and run it."""
    from services.indexer.app import IndexerApp, StoppedWaiting, open_app, transient

    async def body(app: IndexerApp) -> None:
        state._status = app.status
        watchdog = asyncio.create_task(_watch(app, state, stop), name="watchdog")
        try:
            await app.run(stop, until_caught_up=until_caught_up)
        finally:
            watchdog.cancel()
        log.info("indexer stopped")

    try:
        await run_opened(lambda: open_app(settings, stop=stop), body, stop, state, log, transient)
    except StoppedWaiting as exc:
        raise StopRequested(str(exc)) from None


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
