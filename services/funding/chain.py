"""Chain reads of the funding updater: chain time and per-market funding state.

Time is the chain's: the latest block's timestamp. A market snapshot is read at one block
number, so its fields and its time agree with each other.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from web3 import AsyncWeb3

from services.funding.status import MarketStatus
from shared.chain.abi import load_abi

# Field positions of IPositionManager.MarketConfig as returned by getMarket().
_FUNDING_INTERVAL = 5
_PAUSED = 7


@dataclass(frozen=True)
class MarketRef:
    pair: str  # "ETH/USDT" (or the 0x market id when no pair is known)
    market_id: bytes

    @property
    def market_id_hex(self) -> str:
        return "0x" + self.market_id.hex()


@dataclass(frozen=True)
class MarketSnapshot:
    market: MarketRef
    last_funding_time: int
    interval: int
    rate_wad: int
    cumulative_index: int
    paused: bool
    chain_time: int
    block_number: int

    @property
    def next_funding_time(self) -> int:
        return self.last_funding_time + self.interval

    def at(self, block_number: int, chain_time: int) -> MarketSnapshot:
        """The same market state seen at a later time (for a cheap re-check of the clock)."""
        return replace(self, block_number=block_number, chain_time=chain_time)

    def status(self) -> MarketStatus:
        return MarketStatus(
            pair=self.market.pair,
            market_id=self.market.market_id_hex,
            last_funding_time=self.last_funding_time,
            interval=self.interval,
            rate_wad=self.rate_wad,
            cumulative_index=self.cumulative_index,
            chain_time=self.chain_time,
            paused=self.paused,
        )


class ChainReader:
    def __init__(
        self, w3: AsyncWeb3, position_manager: str, abi: list[dict[str, Any]] | None = None
    ):
        self.w3 = w3
        self.address = AsyncWeb3.to_checksum_address(position_manager)
        self.pm = w3.eth.contract(address=self.address, abi=abi or load_abi("PositionManager"))

    async def chain_time(self) -> tuple[int, int]:
        """(block number, timestamp) of the latest block."""
        block = await self.w3.eth.get_block("latest")
        return int(block["number"]), int(block["timestamp"])

    async def market_ids(self) -> list[bytes]:
        return [bytes(m) for m in await self.pm.functions.marketIds().call()]

    async def snapshot(self, market: MarketRef) -> MarketSnapshot:
        number, timestamp = await self.chain_time()
        fns = self.pm.functions
        mid = market.market_id
        config = await fns.getMarket(mid).call(block_identifier=number)
        last = await fns.lastFundingTime(mid).call(block_identifier=number)
        rate = await fns.fundingRate(mid).call(block_identifier=number)
        index = await fns.cumulativeFundingIndex(mid).call(block_identifier=number)
        return MarketSnapshot(
            market=market,
            last_funding_time=int(last),
            interval=int(config[_FUNDING_INTERVAL]),
            rate_wad=int(rate),
            cumulative_index=int(index),
            paused=bool(config[_PAUSED]),
            chain_time=timestamp,
            block_number=number,
        )

    def update_tx(self, market: MarketRef) -> dict[str, Any]:
        """The updateFundingRate(marketId) call, as to/data for the sender."""
        data = self.pm.encode_abi("updateFundingRate", args=[market.market_id])
        return {"to": self.address, "data": data, "value": 0}
