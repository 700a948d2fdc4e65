"""`perpex indexer`: run the indexer service.

SIGTERM/SIGINT: the chunk being written is finished (its transaction commits), the outbox gets a
short chance to flush, and the process exits 0. At start it waits (with backoff, logging what
for, not ready meanwhile) for the RPC node and PostgreSQL; a start-up step that fails
transiently is retried. Exit 2 on bad configuration (also a CHAIN_ID the node contradicts,
MARKETS naming a pair the PositionManager does not list, a database that follows other
contracts), 1 on a reorg deeper than REORG_WINDOW or another fatal error, logged as one line.
"""

from __future__ import annotations

import logging

import click

from services.indexer.settings import IndexerSettings, load_indexer_settings
from shared.dependencies import StopRequested, run_opened
from shared.service import Service, run_main, run_service, wedged_after

log = logging.getLogger("perpex.indexer")
ON_STOP = "finishing the current chunk, then exiting"


async def run_indexer(settings: IndexerSettings, until_caught_up: bool = False) -> int:
    """The indexer in the service skeleton (shared/service.py); its exit status."""

    async def main(svc: Service) -> None:
        from services.indexer.app import dependencies

        await svc.wait_for(dependencies(settings, svc.health))
        await _open_and_run(settings, svc, until_caught_up)

    return await run_service("indexer", log, ON_STOP, main, settings.health_port)


async def _open_and_run(settings: IndexerSettings, svc: Service, until_caught_up: bool) -> None:
    """Open the app (connect, migrate, take the writer lock; retried while it fails
    transiently) and run it."""
    from services.indexer.app import IndexerApp, StoppedWaiting, open_app, transient

    async def body(app: IndexerApp) -> None:
        svc.health.set_status(app.status)
        indexer = app.indexer

        def readiness() -> tuple[bool, str]:
            if indexer.ready:
                return True, f"synced to block {indexer.last_block}"
            return False, "syncing not started or failing"

        watchdog = svc.watchdog(
            lambda: indexer.heartbeat, wedged_after(settings.poll_interval), readiness
        )
        try:
            await app.run(svc.stop, until_caught_up=until_caught_up)
        finally:
            watchdog.cancel()
        log.info("indexer stopped")

    try:
        await run_opened(
            lambda: open_app(settings, stop=svc.stop), body, svc.stop, svc.health, log, transient
        )
    except StoppedWaiting as exc:
        raise StopRequested(str(exc)) from None


@click.command("indexer")
@click.option(
    "--until-caught-up",
    is_flag=True,
    help="Exit 0 once synced to head - CONFIRMATIONS and the outbox is drained.",
)
def indexer(until_caught_up: bool) -> None:
    """Index PositionManager/PositionNFT events into PostgreSQL and Kafka."""
    # the drainer logs broker outages itself
    run_main(
        "indexer",
        load_indexer_settings,
        lambda settings: run_indexer(settings, until_caught_up),
        {"aiokafka": logging.CRITICAL},
    )
