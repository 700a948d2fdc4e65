"""`perpex relayer`: the bridge's off-chain verifier and executor (docs/bridge.md).

SIGTERM/SIGINT: the step in progress finishes (a transaction being confirmed is waited for) and
the process exits 0. SIGKILL at any moment is safe too: the next start reads the chains and
continues where they are. At start it waits (with backoff, logging what for, not ready
meanwhile) for both chains' nodes. Exit 2 on bad configuration, 1 on another fatal error,
logged as one line.
"""

from __future__ import annotations

import logging

import click

from services.relayer import metrics
from services.relayer.settings import RelayerSettings, load_relayer_settings
from shared.dependencies import Dependencies, rpc
from shared.health import HealthState
from shared.service import Service, run_main, run_service, wedged_after

log = logging.getLogger("perpex.relayer")
ON_STOP = "finishing the current step, then exiting"


def dependencies(settings: RelayerSettings, health: HealthState | None = None) -> Dependencies:
    """Both chains' nodes (their chain ids are checked by the relayer itself, naming which)."""
    return Dependencies(
        [
            rpc(settings.rpc_url, name="RPC (home)"),
            rpc(settings.remote_rpc_url, name="RPC (remote)"),
        ],
        health,
        log,
        interval_s=settings.dependency_check_s,
    )


async def run_relayer(settings: RelayerSettings, until_idle: bool = False) -> int:
    """The relayer in the service skeleton (shared/service.py); its exit status."""
    from services.relayer.app import open_relayer
    from services.relayer.relay import Relayer

    async def main(svc: Service) -> None:
        await svc.wait_for(dependencies(settings, svc.health))
        async with open_relayer(settings) as relayer:
            svc.health.set_status(relayer.status)
            metrics.register(relayer)
            log.info(
                "relaying between chain %d (home) and chain %d (remote) as %s",
                relayer.home.side.chain_id,
                relayer.remote.side.chain_id,
                relayer.home.sender.address,
            )
            svc.watchdog(
                lambda: relayer.heartbeat,
                wedged_after(settings.poll_interval, settings.relayer_confirm_timeout_s),
                lambda: _readiness(relayer),
            )
            await relayer.run(svc.stop, until_idle=until_idle)
        log.info("relayer stopped")

    def _readiness(relayer: Relayer) -> tuple[bool, str]:
        pending = sum(len(lane.state.pending) for lane in relayer.lanes)
        return relayer.ready, f"{pending} packet(s) in flight" if relayer.ready else ""

    return await run_service("relayer", log, ON_STOP, main, settings.health_port)


@click.command("relayer")
@click.option(
    "--until-idle",
    is_flag=True,
    help="Exit 0 once both chains are scanned to their head and nothing is left to deliver.",
)
def relayer(until_idle: bool) -> None:
    """Relay the bridge's LayerZero packets between the home and the remote chain: verify them
    on the destination (SimpleMessageLib.validatePacket), then deliver them (lzReceive)."""
    run_main(
        "relayer",
        load_relayer_settings,
        lambda settings: run_relayer(settings, until_idle),
        {"web3": logging.WARNING},
    )
