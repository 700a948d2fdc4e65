"""`perpex funding`: the funding-rate updater (`run`, the default) and `status`.

SIGTERM/SIGINT: no new transaction is started; a send in progress is given up to
SHUTDOWN_TIMEOUT_S to confirm, leadership is released (advisory lock unlocked / Lease emptied)
and the process exits 0. Exit 2 on bad configuration, 1 on another fatal error.
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
from shared.health import HealthState
from shared.service import configure_logging, redact_urls, service_scope
from shared.telemetry import setup_telemetry

log = logging.getLogger("perpex.funding")


def _logging(level: str) -> None:
    configure_logging(level, {"web3": logging.WARNING})


async def run_service(settings: FundingSettings) -> int:
    from services.funding.app import open_updater

    async with service_scope(log, "finishing any send in progress, then exiting") as (stop, state):
        try:
            async with open_updater(settings) as updater:
                state._status = updater.status
                watchdog = asyncio.create_task(_watch(updater, state, stop), name="watchdog")
                try:
                    await updater.run(stop)
                finally:
                    watchdog.cancel()
            return 0
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        except Exception:
            log.exception("funding updater failed")
            return 1


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
        rows = asyncio.run(read_status(settings))
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
