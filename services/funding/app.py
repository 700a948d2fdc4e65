"""Wiring: settings -> chain reader, markets, sender, leader election, Kafka listener, updater.

Used by the CLI (`perpex funding run` / `status`) and the tests, so all run the same code.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable

from web3 import AsyncWeb3

from services.funding.chain import ChainReader, MarketRef
from services.funding.events import FundingEvent, FundingEventListener, FundingParamsEvent
from services.funding.leader import (
    KubeLeaseClient,
    KubernetesLeaseLeader,
    LeaderElector,
    NoLeader,
    PostgresAdvisoryLeader,
)
from services.funding.settings import FundingSettings
from services.funding.status import MarketStatus
from services.funding.updater import FundingUpdater, UpdaterConfig
from shared.chain.abi import load_abi
from shared.chain.client import async_web3
from shared.chain.deployment import Deployment, market_id
from shared.chain.errors import ErrorDecoder
from shared.chain.tx import TxSender
from shared.config import ConfigError, check_chain_id, check_markets
from shared.dependencies import Dependencies, broker, postgres, rpc
from shared.health import HealthState

log = logging.getLogger("perpex.funding")

# Contracts whose custom errors updateFundingRate can surface (the oracle's StalePrice, ...).
ERROR_SOURCES = ("PositionManager", "PriceOracle", "VirtualAMM", "Vault", "PositionNFT")


def dependencies(settings: FundingSettings, health: HealthState | None = None) -> Dependencies:
    """The RPC node always, PostgreSQL with LEADER_ELECTION=postgres (the leader lock lives
    there: without it this replica could only stand by), both waited for at start; the broker
    with KAFKA_LISTEN (events only wake the updater early) is watched, not waited for."""
    deps = [rpc(settings.rpc_url, settings.chain_id)]
    if settings.leader_election == "postgres":
        deps.append(postgres(settings.db_uri))
    if settings.kafka_listen:
        deps.append(broker(settings.kafka_bootstrap_servers, required=False))
    return Dependencies(deps, health, log, interval_s=settings.dependency_check_s)


def error_decoder() -> ErrorDecoder:
    return ErrorDecoder([load_abi(name) for name in ERROR_SOURCES])


async def resolve_markets(
    settings: FundingSettings, deployment: Deployment | None, reader: ChainReader
) -> list[MarketRef]:
    """MARKETS (pairs), else the deployment file's markets, else every market on the chain.
    Raises ConfigError naming pairs the PositionManager does not list."""
    on_chain = await reader.market_ids()
    if settings.market_list:
        pairs = settings.market_list
    elif deployment is not None:
        pairs = deployment.pairs
    else:
        return [MarketRef(deployment_pair(deployment, mid), mid) for mid in on_chain]
    refs = [MarketRef(pair, market_id(pair)) for pair in pairs]
    known = {m.market_id.lower(): p for p, m in deployment.markets.items()} if deployment else {}
    check_markets(
        "funding",
        {r.market_id_hex: r.pair for r in refs},
        ["0x" + m.hex() for m in on_chain],
        known,
        reader.address,
    )
    return refs


def deployment_pair(deployment: Deployment | None, mid: bytes) -> str:
    pair = deployment.pair_of(mid) if deployment is not None else None
    return pair or "0x" + mid.hex()


def make_leader(settings: FundingSettings, client: KubeLeaseClient | None = None) -> LeaderElector:
    name = settings.election_name
    if settings.leader_election == "none":
        return NoLeader(name)
    if settings.leader_election == "postgres":
        return PostgresAdvisoryLeader(settings.db_uri, name, retry_s=settings.leader_retry_s)
    assert client is not None
    return KubernetesLeaseLeader(
        client,
        settings.namespace,
        name,
        settings.identity,
        duration_s=settings.lease_duration_s,
        renew_deadline_s=settings.lease_renew_deadline_s,
        retry_s=settings.leader_retry_s,
    )


def updater_config(settings: FundingSettings) -> UpdaterConfig:
    return UpdaterConfig(
        grace_s=settings.funding_grace_s,
        max_sleep_s=settings.funding_max_sleep_s,
        min_sleep_s=min(settings.poll_interval, settings.funding_max_sleep_s),
        revert_backoff_s=settings.funding_revert_backoff_s,
        revert_backoff_max_s=settings.funding_revert_backoff_max_s,
        error_backoff_max_s=settings.funding_error_backoff_max_s,
        expected_interval_s=settings.funding_interval_s,
        shutdown_timeout_s=settings.shutdown_timeout_s,
        balance_check_s=settings.funding_balance_check_s,
        fence_timeout_s=settings.funding_confirm_timeout_s,
    )


async def _connect(settings: FundingSettings) -> tuple[AsyncWeb3, ChainReader, Deployment | None]:
    w3 = async_web3(settings.rpc_url)
    check_chain_id(settings, int(await w3.eth.chain_id))
    deployment = settings.load_deployment()
    reader = ChainReader(w3, settings.position_manager())
    return w3, reader, deployment


@contextlib.asynccontextmanager
async def open_updater(settings: FundingSettings) -> AsyncIterator[FundingUpdater]:
    """Connect and build the updater; `await updater.run(stop)` runs it."""
    key = settings.wallet_key("funding")
    if key is None:
        raise ConfigError({"FUNDING_PRIVATE_KEY": "is required"}, "funding")
    w3, reader, deployment = await _connect(settings)
    try:
        markets = await resolve_markets(settings, deployment, reader)
        sender = TxSender(
            w3,
            key,
            settings.chain_id,
            gas_multiplier=settings.gas_multiplier,
            max_retries=settings.max_retries,
            error_decoder=error_decoder(),
            replace_after_s=settings.funding_replace_after_s,
            confirm_timeout_s=settings.funding_confirm_timeout_s,
            poll_s=min(0.5, settings.poll_interval),
            min_balance_wei=settings.min_balance_wei,
        )
        client = None
        if settings.leader_election == "kubernetes":
            client = await KubeLeaseClient.connect(settings.kube_api_url or None)
        leader = make_leader(settings, client)
        listener_factory = None
        if settings.kafka_listen:
            ids = {m.market_id_hex for m in markets}

            def listener_factory(
                on_event: Callable[[FundingEvent], None],
                on_params: Callable[[FundingParamsEvent], None],
            ) -> FundingEventListener:
                return FundingEventListener(
                    settings.kafka_bootstrap_servers,
                    settings.kafka_topic,
                    ids,
                    on_event,
                    on_params=on_params,
                )

        updater = FundingUpdater(
            reader=reader,
            sender=sender,
            leader=leader,
            markets=markets,
            config=updater_config(settings),
            listener_factory=listener_factory,
        )
        log.info(
            "funding updater for %s; wallet %s; leader election %s (%s)",
            ", ".join(m.pair for m in markets),
            sender.address,
            settings.leader_election,
            settings.election_name,
        )
        yield updater
    finally:
        with contextlib.suppress(Exception):
            await w3.provider.disconnect()


async def read_status(settings: FundingSettings) -> list[MarketStatus]:
    """Every configured market's funding status, read from the chain at one moment."""
    w3, reader, deployment = await _connect(settings)
    try:
        markets = await resolve_markets(settings, deployment, reader)
        return [(await reader.snapshot(m)).status() for m in markets]
    finally:
        with contextlib.suppress(Exception):
            await w3.provider.disconnect()
