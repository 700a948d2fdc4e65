"""Wiring: settings -> both chains' clients and senders, the bridge deployment, the state file
and the relayer. Used by the CLI (`perpex relayer`) and the tests."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from services.relayer.chains import RelayerConfig, deployment_key, make_chain
from services.relayer.relay import Relayer
from services.relayer.settings import RelayerSettings
from services.relayer.state import RelayerState
from shared.chain.client import async_web3


@contextlib.asynccontextmanager
async def open_relayer(settings: RelayerSettings) -> AsyncIterator[Relayer]:
    bridge = settings.bridge()
    home_w3 = async_web3(settings.rpc_url)
    remote_w3 = async_web3(settings.remote_rpc_url)
    try:
        home = make_chain("home", bridge.home, home_w3, settings)
        remote = make_chain("remote", bridge.remote, remote_w3, settings)
        starts = {
            "remote->home": bridge.remote.start_block - 1,
            "home->remote": bridge.home.start_block - 1,
        }
        state = RelayerState.load(settings.relayer_state_file, deployment_key(bridge), starts)
        relayer = Relayer(
            bridge,
            home,
            remote,
            state,
            RelayerConfig(
                confirmations=settings.confirmations,
                log_span=settings.relayer_log_span,
                poll_s=settings.poll_interval,
                backoff_max_s=settings.relayer_backoff_max_s,
                max_retries=settings.max_retries,
            ),
        )
        await relayer.start()
        yield relayer
    finally:
        for w3 in (home_w3, remote_w3):
            with contextlib.suppress(Exception):
                await w3.provider.disconnect()
