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
                               "feed_decimals": 8}, "BTC/USDT": {...}}
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

    @field_validator("deployer")
    @classmethod
    def _deployer(cls, v: str) -> ChecksumAddress:
        return _checksum(v)

    @model_validator(mode="after")
    def _ids_match_pairs(self) -> Deployment:
        for pair, m in self.markets.items():
            if m.market_id != market_id_hex(pair):
                raise ValueError(f"market_id of {pair} is not keccak256({pair!r})")
        return self

    # ---- loading / saving ----
    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Deployment:
        return cls.model_validate(json.loads(Path(path).read_text()))

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Deployment:
        return cls.model_validate(data)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(by_alias=True)

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
