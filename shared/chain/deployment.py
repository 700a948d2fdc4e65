"""The deployment file written by ``contracts/script/Deploy.s.sol`` (and ``perpex deploy``).

Format (JSON)::

    {
      "chain_id": 31337,
      "start_block": 0,                 # first block to index (<= block of the first deploy tx)
      "deployer": "0x...",
      "funding_interval": 28800,        # seconds, default for every market
      "collateral_decimals": 18,
      "contracts": {"PositionManager": "0x..", "PositionNFT": "0x..", "Vault": "0x..",
                    "CollateralToken": "0x..", "PriceOracle": "0x.."},
      "markets": {"ETH/USDT": {"market_id": "0x<keccak256(pair)>", "vamm": "0x..",
                               "oracle_feed": "0x..", "initial_price": "2000",
                               "feed_decimals": 8}, "BTC/USDT": {...}},
      "bridge": {                       # optional: the cross-chain collateral bridge (docs/bridge.md)
        "home":   {"chain_id": 31337, "eid": 31337, "start_block": 12, "endpoint": "0x..",
                   "message_lib": "0x..", "bridge": "0x..", "token": "0x..", "token_decimals": 18},
        "remote": {"chain_id": 31338, "eid": 31338, "start_block": 0, "endpoint": "0x..",
                   "message_lib": "0x..", "depositor": "0x..", "token": "0x..",
                   "token_decimals": 18},
        "verifier": "0x..", "lz_receive_gas": 250000, "reserve": "10000000000000000000000000"}
    }
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from eth_typing import ChecksumAddress
from eth_utils import is_address, keccak, to_checksum_address
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


def market_id(pair: str) -> bytes:
    """marketId = keccak256(bytes(pair)), e.g. market_id("ETH/USDT")."""
    return keccak(text=pair)


def market_id_hex(pair: str) -> str:
    return "0x" + market_id(pair).hex()


def _checksum(value: str) -> ChecksumAddress:
    if not isinstance(value, str) or not is_address(value):
        raise ValueError(f"not an address: {value!r}")
    return to_checksum_address(value)


class MarketDeployment(BaseModel):
    model_config = ConfigDict(frozen=True)

    market_id: str
    vamm: ChecksumAddress
    oracle_feed: ChecksumAddress
    initial_price: str
    feed_decimals: int = 8

    @field_validator("vamm", "oracle_feed")
    @classmethod
    def _addr(cls, v: str) -> ChecksumAddress:
        return _checksum(v)

    @field_validator("market_id")
    @classmethod
    def _market_id(cls, v: str) -> str:
        raw = v.removeprefix("0x")
        if len(raw) != 64:
            raise ValueError("market_id must be 32 bytes of hex")
        return "0x" + raw.lower()

    @property
    def market_id_bytes(self) -> bytes:
        return bytes.fromhex(self.market_id[2:])


class ContractAddresses(BaseModel):
    model_config = ConfigDict(frozen=True, populate_by_name=True)

    position_manager: ChecksumAddress = Field(alias="PositionManager")
    position_nft: ChecksumAddress = Field(alias="PositionNFT")
    vault: ChecksumAddress = Field(alias="Vault")
    collateral_token: ChecksumAddress = Field(alias="CollateralToken")
    price_oracle: ChecksumAddress = Field(alias="PriceOracle")

    @field_validator(
        "position_manager", "position_nft", "vault", "collateral_token", "price_oracle"
    )
    @classmethod
    def _addr(cls, v: str) -> ChecksumAddress:
        return _checksum(v)

    def by_name(self) -> dict[str, ChecksumAddress]:
        """Artifact name -> address."""
        return self.model_dump(by_alias=True)


class GovernanceAddresses(BaseModel):
    """The PEX token, the TimelockController that owns the protocol, and the Governor."""

    model_config = ConfigDict(frozen=True)

    token: ChecksumAddress
    timelock: ChecksumAddress
    governor: ChecksumAddress

    @field_validator("token", "timelock", "governor")
    @classmethod
    def _addr(cls, v: str) -> ChecksumAddress:
        return _checksum(v)


class BridgeSide(BaseModel):
    """One chain of the bridge: its LayerZero endpoint (and local message library; the zero
    address on a chain with LayerZero's own endpoint), the bridge's contract there and the token
    it moves."""

    model_config = ConfigDict(frozen=True)

    chain_id: int
    eid: int = Field(gt=0, lt=2**32)
    start_block: int = Field(ge=0)
    endpoint: ChecksumAddress
    message_lib: ChecksumAddress
    token: ChecksumAddress
    token_decimals: int = Field(ge=0, le=18)
    bridge: ChecksumAddress | None = None  # home: CollateralBridge
    depositor: ChecksumAddress | None = None  # remote: CollateralDepositor

    @field_validator("endpoint", "message_lib", "token", "bridge", "depositor")
    @classmethod
    def _addr(cls, v: str | None) -> ChecksumAddress | None:
        return None if v is None else _checksum(v)

    @property
    def app(self) -> ChecksumAddress:
        """The bridge's OApp on this chain."""
        app = self.bridge or self.depositor
        assert app is not None
        return app


class BridgeDeployment(BaseModel):
    """script/DeployBridge.s.sol's output: both ends and how they are wired."""

    model_config = ConfigDict(frozen=True)

    home: BridgeSide
    remote: BridgeSide
    verifier: ChecksumAddress  # the address the local message libraries accept packets from
    lz_receive_gas: int = 250_000
    reserve: str = "0"  # home collateral put in the reserve at deploy (WAD, decimal string)

    @field_validator("verifier")
    @classmethod
    def _verifier(cls, v: str) -> ChecksumAddress:
        return _checksum(v)

    @model_validator(mode="after")
    def _ends(self) -> BridgeDeployment:
        if self.home.bridge is None:
            raise ValueError("bridge.home.bridge (the CollateralBridge) is missing")
        if self.remote.depositor is None:
            raise ValueError("bridge.remote.depositor (the CollateralDepositor) is missing")
        if self.home.eid == self.remote.eid:
            raise ValueError("home and remote endpoint ids must differ")
        return self

    def side(self, chain_id: int) -> BridgeSide:
        for s in (self.home, self.remote):
            if s.chain_id == chain_id:
                return s
        raise KeyError(f"chain {chain_id} is not an end of the bridge")


class Deployment(BaseModel):
    model_config = ConfigDict(frozen=True)

    chain_id: int
    start_block: int = Field(ge=0)
    deployer: ChecksumAddress
    profile: str = "dev"  # the deploy profile (contracts/README.md): "dev" or "production"
    funding_interval: int = 28800
    collateral_decimals: int = 18
    contracts: ContractAddresses
    markets: dict[str, MarketDeployment]
    governance: GovernanceAddresses | None = None  # None: the deployer owns the protocol
    bridge: BridgeDeployment | None = None

    @field_validator("deployer")
    @classmethod
    def _deployer(cls, v: str) -> ChecksumAddress:
        return _checksum(v)

    @model_validator(mode="after")
    def _ids_match_pairs(self) -> Deployment:
        for pair, m in self.markets.items():
            if m.market_id != market_id_hex(pair):
                raise ValueError(f"market_id of {pair} is not keccak256({pair!r})")
        if self.bridge is not None and self.bridge.home.chain_id != self.chain_id:
            raise ValueError(
                f"bridge.home is chain {self.bridge.home.chain_id}, not {self.chain_id}"
            )
        return self

    # ---- loading / saving ----
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Deployment:
        return cls.model_validate(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        return cls.model_validate(data)

    def to_dict(self) -> dict[str, Any]:
        data = self.model_dump(by_alias=True)
        if self.bridge is None:
            del data["bridge"]  # files without a bridge keep their old shape
        return data

    def save(self, path: str | os.PathLike[str]) -> Path:
        """Write atomically (temp file + rename)."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.")
        with os.fdopen(fd, "w") as fh:
            json.dump(self.to_dict(), fh, indent=2)
            fh.write("\n")
        os.replace(tmp, target)
        return target

    # ---- lookups ----
    @property
    def pairs(self) -> list[str]:
        return list(self.markets)

    def market(self, pair: str) -> MarketDeployment:
        try:
            return self.markets[pair]
        except KeyError:
            raise KeyError(
                f"market {pair!r} not in deployment ({', '.join(self.markets)})"
            ) from None

    def market_ids(self) -> dict[str, bytes]:
        """pair -> marketId bytes."""
        return {pair: m.market_id_bytes for pair, m in self.markets.items()}

    def pair_of(self, market_id_value: bytes | str) -> str | None:
        """The pair whose marketId is `market_id_value` (bytes or 0x-hex), if deployed."""
        key = market_id_value.hex() if isinstance(market_id_value, bytes) else market_id_value
        key = "0x" + key.removeprefix("0x").lower()
        for pair, m in self.markets.items():
            if m.market_id == key:
                return pair
        return None
