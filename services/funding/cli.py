"""`perpex funding`: the funding-rate updater (`run`, the default) and `status`.

SIGTERM/SIGINT: no new transaction is started; a send in progress is given up to
SHUTDOWN_TIMEOUT_S to confirm, leadership is released (advisory lock unlocked / Lease emptied)
and the process exits 0. At start it waits (with backoff, logging what for, not ready
meanwhile) for the RPC node and, with LEADER_ELECTION=postgres, PostgreSQL; a start-up step
that fails transiently is retried. Exit 2 on bad configuration (also a CHAIN_ID the node
contradicts, MARKETS naming a pair the PositionManager does not list), 1 on another fatal
error, logged as one line.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys

import click

from services.funding.settings import (
    FundingSettings,
    load_funding_settings,
    load_status_settings,
)
from shared.config import ConfigError, exit_on_config_error, redact_url
from shared.dependencies import StopRequested, retry_transient, run_opened
from shared.health import HealthState
from shared.service import configure_logging, redact_urls, run_guarded, service_scope
from shared.telemetry import setup_telemetry

log = logging.getLogger("perpex.funding")


def _logging(level: str) -> None:
    configure_logging(level, {"web3": logging.WARNING})


async def run_service(settings: FundingSettings) -> int:
    from services.funding.app import dependencies

    async with service_scope(log, "finishing any send in progress, then exiting") as (stop, state):
        deps = dependencies(settings, state)

        async def main() -> None:
            state.set_ready(False, "starting: waiting for dependencies")
            if not await deps.wait(stop):
                raise StopRequested("stopped while waiting for dependencies")
            watch = deps.start_watch(stop)
            try:
                await _open_and_run(settings, state, stop)
            finally:
                watch.cancel()

        return await run_guarded(log, "funding updater", main)


async def _open_and_run(settings: FundingSettings, state: HealthState, stop: asyncio.Event) -> None:
    """Build the updater (chain id, markets, wallet) and run it (building retried while it
    fails transiently)."""
    from services.funding.app import open_updater
    from services.funding.updater import FundingUpdater

    async def body(updater: FundingUpdater) -> None:
        state._status = updater.status
        watchdog = asyncio.create_task(_watch(updater, state, stop), name="watchdog")
        try:
            await updater.run(stop)
        finally:
            watchdog.cancel()

    await run_opened(lambda: open_updater(settings), body, stop, state, log)


async def _watch(updater: object, state: HealthState, stop: asyncio.Event) -> None:
    from services.funding.updater import FundingUpdater

    assert isinstance(updater, FundingUpdater)
    # A send may legitimately take the fence wait plus the receipt wait.
    cfg = updater.config
    wedged_after = max(120.0, 5 * cfg.max_sleep_s, 2 * cfg.fence_timeout_s + 60)
    while not stop.is_set():
        state.alive = not updater.wedged(wedged_after)
        if updater.ready:
            role = "leader" if updater.leader.is_leader else "standby"
            state.set_ready(True, f"{role}; {len(updater.markets)} market(s) read")
        else:
            state.set_ready(False, "chain not read yet")
        await asyncio.sleep(1.0)


@click.group("funding", invoke_without_command=True)
@click.pass_context
def funding(ctx: click.Context) -> None:
    """Funding-rate updater: `run` (the default) or `status`."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@funding.command("run")
def run() -> None:
    """Update every market's funding rate once per interval (one leader among replicas)."""
    settings = exit_on_config_error(load_funding_settings)
    _logging(settings.log_level)
    setup_telemetry("perpex-funding")
    sys.exit(asyncio.run(run_service(settings)))


@funding.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def status(as_json: bool) -> None:
    """Per market: last funding time, current rate, time to the next window (chain time)."""
    from services.funding.app import read_status
    from services.funding.status import format_status_table

    settings = exit_on_config_error(load_status_settings)
    _logging("WARNING")
    try:
        rows = asyncio.run(
            retry_transient(
                "reading the chain", lambda: read_status(settings), logger=log, max_attempts=4
            )
        )
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(2)
    except Exception as exc:
        where = redact_url(settings.rpc_url)
        raise click.ClickException(
            redact_urls(f"cannot read the chain at {where}: {exc}")
        ) from None
    if as_json:
        click.echo(json.dumps({"markets": [r.as_dict() for r in rows]}, indent=2))
    else:
        click.echo(format_status_table(rows))
