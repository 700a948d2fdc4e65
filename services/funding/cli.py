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
from shared.config import EXIT_CONFIG_ERROR, ConfigError, exit_on_config_error, redact_url
from shared.dependencies import retry_transient, run_opened
from shared.service import Service, configure_logging, redact_urls, run_main, run_service
from shared.service import wedged_after as wedged_after_s

log = logging.getLogger("perpex.funding")
ON_STOP = "finishing any send in progress, then exiting"
QUIET = {"web3": logging.WARNING}


async def run_funding(settings: FundingSettings) -> int:
    """The funding updater in the service skeleton (shared/service.py); its exit status."""

    async def main(svc: Service) -> None:
        from services.funding.app import dependencies

        await svc.wait_for(dependencies(settings, svc.health))
        await _open_and_run(settings, svc)

    return await run_service("funding updater", log, ON_STOP, main, settings.health_port)


async def _open_and_run(settings: FundingSettings, svc: Service) -> None:
    """Build the updater (chain id, markets, wallet) and run it (building retried while it
    fails transiently)."""
    from services.funding.app import open_updater
    from services.funding.updater import FundingUpdater

    async def body(updater: FundingUpdater) -> None:
        svc.health.set_status(updater.status)

        def readiness() -> tuple[bool, str]:
            if updater.ready:
                role = "leader" if updater.leader.is_leader else "standby"
                return True, f"{role}; {len(updater.markets)} market(s) read"
            return False, "chain not read yet"

        # A send may legitimately take the fence wait plus the receipt wait.
        cfg = updater.config
        watchdog = svc.watchdog(
            lambda: min(s.heartbeat for s in updater.markets.values()),
            wedged_after_s(cfg.max_sleep_s, cfg.fence_timeout_s),
            readiness,
            clock=updater.clock,
        )
        try:
            await updater.run(svc.stop)
        finally:
            watchdog.cancel()

    await run_opened(lambda: open_updater(settings), body, svc.stop, svc.health, log)


@click.group("funding", invoke_without_command=True)
@click.pass_context
def funding(ctx: click.Context) -> None:
    """Funding-rate updater: `run` (the default) or `status`."""
    if ctx.invoked_subcommand is None:
        ctx.invoke(run)


@funding.command("run")
def run() -> None:
    """Update every market's funding rate once per interval (one leader among replicas)."""
    run_main("funding", load_funding_settings, run_funding, QUIET)


@funding.command("status")
@click.option("--json", "as_json", is_flag=True, help="One JSON object instead of a table.")
def status(as_json: bool) -> None:
    """Per market: last funding time, current rate, time to the next window (chain time)."""
    from services.funding.app import read_status
    from services.funding.status import format_status_table

    settings = exit_on_config_error(load_status_settings)
    configure_logging("WARNING", QUIET, secrets=[settings])
    try:
        rows = asyncio.run(
            retry_transient(
                "reading the chain", lambda: read_status(settings), logger=log, max_attempts=4
            )
        )
    except ConfigError as exc:
        print(str(exc), file=sys.stderr)
        sys.exit(EXIT_CONFIG_ERROR)
    except Exception as exc:
        where = redact_url(settings.rpc_url)
        raise click.ClickException(
            redact_urls(f"cannot read the chain at {where}: {exc}")
        ) from None
    if as_json:
        click.echo(json.dumps({"markets": [r.as_dict() for r in rows]}, indent=2))
    else:
        click.echo(format_status_table(rows))
