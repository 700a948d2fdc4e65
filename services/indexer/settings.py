"""Indexer settings: the shared service settings plus sync tuning.

Contract addresses come from POSITION_MANAGER_ADDRESS + POSITION_NFT_ADDRESS, or from the
deployment JSON at DEPLOYMENT_FILE (explicit addresses win). START_BLOCK defaults to the
deployment's start_block (0 without a deployment file).

CONFIRMATIONS defaults to 0: right for a local automining anvil, where every block is final
until someone calls anvil_reorg. On a public chain use the depth after which reorgs are
practically unseen (e.g. 12 on Ethereum mainnet, more on L2s that reorg deeper); reorgs within
the last CONFIRMATIONS blocks are never indexed, deeper ones are rolled back by hash checks
within REORG_WINDOW.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from pydantic import Field, field_validator, model_validator

from shared.chain.deployment import BridgeDeployment, Deployment, market_id_hex
from shared.config import BaseServiceSettings, ConfigError, load_settings, validate_address

MIN_REORG_WINDOW = 2


class IndexerSettings(BaseServiceSettings):
    start_block: int | None = Field(default=None, ge=0, description="first block to index")
    confirmations: int = Field(default=0, ge=0, le=10_000)
    chunk_size: int = Field(default=9, ge=1, description="initial eth_getLogs span in blocks")
    max_chunk_size: int = Field(default=2000, ge=1, le=1_000_000)
    max_logs_per_chunk: int = Field(
        default=10_000, ge=1, description="stop growing the span once an answer holds this many"
    )
    reorg_window: int = Field(
        default=128,
        le=100_000,
        description="block hashes kept; a rollback covers REORG_WINDOW - 1 blocks",
    )
    outbox_batch: int = Field(default=2000, ge=1, le=100_000)
    outbox_memory_messages: int = Field(
        default=100_000,
        ge=0,
        le=10_000_000,
        description="committed messages kept in memory for the drainer (the rest is rebuilt)",
    )
    progress_log_s: float = Field(
        default=10.0, ge=0, le=3600, description="seconds between backfill progress lines; 0: off"
    )
    rpc_timeout_s: float = Field(default=15.0, gt=0, le=600)
    kafka_partitions: int = Field(default=6, ge=1, le=1000)
    governor_address: str | None = Field(
        default=None,
        description="the PEX Governor whose proposals to record (default: the deployment's)",
    )

    @field_validator("governor_address")
    @classmethod
    def _governor(cls, value: str | None) -> str | None:
        return validate_address(value)

    remote_rpc_url: str | None = Field(
        default=None,
        description="the bridge's remote chain: with a deployment that has a bridge section, "
        "the indexer also follows the bridge's events on both chains (docs/bridge.md)",
    )

    @field_validator("reorg_window")
    @classmethod
    def _reorg_window(cls, value: int) -> int:
        if value < MIN_REORG_WINDOW:
            raise ValueError(
                f"must be at least {MIN_REORG_WINDOW}: a rollback covers REORG_WINDOW - 1 "
                f"blocks (one still-canonical block of the window is the ancestor), so "
                f"{value} could roll nothing back"
            )
        return value

    @model_validator(mode="after")
    def _check(self) -> IndexerSettings:
        if self.max_chunk_size < self.chunk_size:
            raise ValueError("MAX_CHUNK_SIZE must be >= CHUNK_SIZE")
        has_addresses = bool(self.position_manager_address and self.position_nft_address)
        if not has_addresses and self.deployment_file is None:
            raise ValueError(
                "set DEPLOYMENT_FILE, or both POSITION_MANAGER_ADDRESS and POSITION_NFT_ADDRESS"
            )
        if self.deployment_file is not None and not self.deployment_file.is_file():
            raise ValueError(f"DEPLOYMENT_FILE {self.deployment_file} does not exist")
        return self


@dataclass(frozen=True)
class MarketInfo:
    pair: str
    market_id: str  # 0x-hex bytes32
    vamm: str | None = None
    oracle_feed: str | None = None


@dataclass(frozen=True)
class IndexTargets:
    """What to index, resolved from settings (+ deployment file)."""

    position_manager: str  # lower-case
    position_nft: str  # lower-case
    start_block: int
    governor: str | None = None  # lower-case; set when the deployment is governed
    markets: dict[str, MarketInfo] = field(default_factory=dict)  # market_id -> info
    # market ids to keep; None = every market the contracts emit
    market_filter: frozenset[str] | None = None
    bridge: BridgeDeployment | None = None  # the deployment's bridge section

    @property
    def contracts(self) -> dict[str, str]:
        """Followed address -> the emitting contract's name (its ABI)."""
        out = {self.position_manager: "PositionManager", self.position_nft: "PositionNFT"}
        if self.governor is not None:
            out[self.governor] = "PerpExGovernor"
        return out

    @property
    def addresses(self) -> list[str]:
        return list(self.contracts)

    def pair_of(self, market_id: str) -> str | None:
        info = self.markets.get(market_id)
        return info.pair if info else None


def resolve_targets(settings: IndexerSettings) -> IndexTargets:
    """Addresses, start block and markets. Raises ConfigError on an unreadable deployment."""
    deployment: Deployment | None = None
    if settings.deployment_file is not None:
        try:
            deployment = Deployment.load(settings.deployment_file)
        except Exception as exc:
            raise ConfigError(
                {"DEPLOYMENT_FILE": f"cannot read {settings.deployment_file}: {exc}"}, "indexer"
            ) from None
    pm = settings.position_manager_address or (
        deployment.contracts.position_manager if deployment else None
    )
    nft = settings.position_nft_address or (
        deployment.contracts.position_nft if deployment else None
    )
    assert pm and nft  # guaranteed by IndexerSettings._check
    if settings.start_block is not None:
        start = settings.start_block
    else:
        start = deployment.start_block if deployment else 0
    markets: dict[str, MarketInfo] = {}
    if deployment is not None:
        for pair, m in deployment.markets.items():
            markets[m.market_id] = MarketInfo(
                pair, m.market_id, m.vamm.lower(), m.oracle_feed.lower()
            )
    wanted = settings.market_list
    market_filter: frozenset[str] | None = None
    if wanted:
        ids = {market_id_hex(pair): pair for pair in wanted}
        for mid, pair in ids.items():
            markets.setdefault(mid, MarketInfo(pair, mid))
        market_filter = frozenset(ids)
    governor = settings.governor_address or (
        deployment.governance.governor if deployment and deployment.governance else None
    )
    return IndexTargets(
        position_manager=pm.lower(),
        position_nft=nft.lower(),
        governor=governor.lower() if governor else None,
        start_block=start,
        markets=markets,
        market_filter=market_filter,
        bridge=deployment.bridge if deployment is not None else None,
    )


def load_indexer_settings(**overrides: object) -> IndexerSettings:
    return load_settings(IndexerSettings, "indexer", **overrides)
