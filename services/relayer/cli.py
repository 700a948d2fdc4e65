"""`perpex relayer`: the bridge's off-chain verifier and executor (docs/bridge.md).

SIGTERM/SIGINT: the step in progress finishes (a transaction being confirmed is waited for) and
the process exits 0. SIGKILL at any moment is safe too: the next start reads the chains and
continues where they are. Exit 2 on bad configuration, 1 on another fatal error.
"""

from __future__ import annotations

import asyncio
import logging
import sys

import click

from services.relayer.settings import RelayerSettings, load_relayer_settings
from shared.config import ConfigError, exit_on_config_error
from shared.health import HealthState
from shared.service import configure_logging, service_scope
from shared.telemetry import setup_telemetry

log = logging.getLogger("perpex.relayer")


async def run_service(settings: RelayerSettings, until_idle: bool = False) -> int:
    from services.relayer.app import open_relayer

    async with service_scope(log, "finishing the current step, then exiting") as (stop, state):
        try:
            async with open_relayer(settings) as relayer:
                state._status = relayer.status
                watchdog = asyncio.create_task(_watch(relayer, state, stop), name="watchdog")
                log.info(
                    "relaying between chain %d (home) and chain %d (remote) as %s",
                    relayer.home.side.chain_id,
                    relayer.remote.side.chain_id,
                    relayer.home.sender.address,
                )
                try:
                    await relayer.run(stop, until_idle=until_idle)
                finally:
                    watchdog.cancel()
            log.info("relayer stopped")
            return 0
        except ConfigError as exc:
            print(str(exc), file=sys.stderr)
            return 2
        except Exception:
            log.exception("relayer failed")
            return 1


async def _watch(relayer: object, state: HealthState, stop: asyncio.Event) -> None:
    from services.relayer.relay import Relayer

    assert isinstance(relayer, Relayer)
    wedged_after = max(120.0, 2 * relayer.home.sender.confirm_timeout_s)
    while not stop.is_set():
        state.alive = not relayer.wedged(wedged_after)
        pending = sum(len(lane.state.pending) for lane in relayer.lanes)
        state.set_ready(relayer.ready, f"{pending} packet(s) in flight" if relayer.ready else "")
        await asyncio.sleep(1.0)


@click.command("relayer")
@click.option(
    "--until-idle",
    is_flag=True,
    help="Exit 0 once both chains are scanned to their head and nothing is left to deliver.",
)
def relayer(until_idle: bool) -> None:
    """Relay the bridge's LayerZero packets between the home and the remote chain: verify them
    on the destination (SimpleMessageLib.validatePacket), then deliver them (lzReceive)."""
    settings = exit_on_config_error(load_relayer_settings)
    configure_logging(settings.log_level, {"web3": logging.WARNING})
    setup_telemetry("perpex-relayer")
    sys.exit(asyncio.run(run_service(settings, until_idle)))
