"""Reads the keeper makes from the PositionManager, as plain eth_calls (ABI from contracts/out).

One eth_call each: the block number, a market's state (index price and cumulative funding
index, which moves every second), its configuration, a batch of positions' health (getPositionsHealth: one call for up to HEALTH_BATCH_SIZE
positions), one position. Calls pin the block they are about, so a round's prices and health
views describe the same state.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from eth_abi import decode as abi_decode
from eth_abi import encode as abi_encode
from eth_utils import function_signature_to_4byte_selector
from web3 import AsyncWeb3
from web3.types import RPCEndpoint

from services.keeper.book import END_OF_BLOCK, BookPosition
from services.keeper.decisions import OnchainHealth
from shared.chain.abi import abi_type, event_topic, load_abi
from shared.chain.errors import ErrorDecoder


@dataclass(frozen=True, slots=True)
class MarketParams:
    """The parts of a market's configuration the keeper uses (WAD)."""

    mmr: int  # maintenance margin ratio
    fee_ratio: int  # liquidation penalty, of the unwound notional at the index
    reward_share: int  # the liquidator's share of the penalty


class RpcCallError(RuntimeError):
    """The node answered with a JSON-RPC error object."""

    def __init__(self, method: str, error: Any):
        message = error.get("message", str(error)) if isinstance(error, dict) else str(error)
        super().__init__(f"{method}: {message}")
        self.error = error
        self.message = message

    @property
    def is_revert(self) -> bool:
        return "revert" in self.message.lower()


class _Fn:
    def __init__(self, entry: dict[str, Any]):
        self.inputs = [abi_type(i) for i in entry["inputs"]]
        self.outputs = [abi_type(o) for o in entry["outputs"]]
        sig = f"{entry['name']}({','.join(self.inputs)})"
        self.selector = function_signature_to_4byte_selector(sig)

    def encode(self, *args: Any) -> str:
        return "0x" + (self.selector + abi_encode(self.inputs, list(args))).hex()

    def decode(self, raw: bytes) -> tuple[Any, ...]:
        return tuple(abi_decode(self.outputs, raw))


def _hex_block(block: int | str) -> str:
    return hex(block) if isinstance(block, int) else block


def _mid(market_id: str) -> bytes:
    return bytes.fromhex(market_id.removeprefix("0x"))


class ChainReader:
    def __init__(self, w3: AsyncWeb3, position_manager: str):
        self.w3 = w3
        self.address = position_manager
        abi = load_abi("PositionManager")
        # by name, the form with the fewest arguments: liquidatePosition is overloaded (the
        # keeper sends liquidatePosition(tokenId); the other form adds a price bound)
        fns: dict[str, dict[str, Any]] = {}
        for e in abi:
            if e.get("type") != "function":
                continue
            held = fns.get(e["name"])
            if held is None or len(e["inputs"]) < len(held["inputs"]):
                fns[e["name"]] = e
        self.decoder = ErrorDecoder([abi])
        self._health = _Fn(fns["getPositionsHealth"])
        self._index = _Fn(fns["indexPrice"])
        self._market = _Fn(fns["getMarket"])
        self._funding = _Fn(fns["cumulativeFundingIndex"])
        self._state = _Fn(fns["marketState"])
        self._position = _Fn(fns["getPosition"])
        self._market_ids = _Fn(fns["marketIds"])
        self._liquidate = _Fn(fns["liquidatePosition"])
        self._liquidated_topic = event_topic("PositionManager", "PositionLiquidated")

    async def _request(self, method: str, params: list[Any]) -> Any:
        resp = await self.w3.provider.make_request(RPCEndpoint(method), params)
        if "error" in resp:
            raise RpcCallError(method, resp["error"])
        return resp["result"]

    async def call(self, data: str, block: int | str = "latest") -> bytes:
        result = await self._request(
            "eth_call", [{"to": self.address, "data": data}, _hex_block(block)]
        )
        return bytes.fromhex(str(result).removeprefix("0x"))

    async def block_number(self) -> int:
        return int(await self._request("eth_blockNumber", []), 16)

    async def chain_id(self) -> int:
        return int(await self._request("eth_chainId", []), 16)

    async def index_price(self, market_id: str, block: int | str = "latest") -> int:
        """The oracle index price (WAD); 0 when the oracle cannot answer (stale, invalid)."""
        try:
            raw = await self.call(self._index.encode(_mid(market_id)), block)
        except RpcCallError as exc:
            if exc.is_revert:
                return 0
            raise
        return int(self._index.decode(raw)[0])

    async def market_state(
        self, market_id: str, block: int | str = "latest"
    ) -> tuple[int, int, int]:
        """(index price, longs' and shorts' cumulative funding index) at `block`; the price is 0
        when the oracle cannot answer (stale, invalid): marketState never reverts for a known
        market."""
        raw = await self.call(self._state.encode(_mid(market_id)), block)
        index, _mark, long, short, _long_size, _short_size = self._state.decode(raw)
        return int(index), int(long), int(short)

    async def maintenance_margin_ratio(self, market_id: str) -> int:
        return (await self.market_params(market_id)).mmr

    async def market_params(self, market_id: str) -> MarketParams:
        (cfg,) = self._market.decode(await self.call(self._market.encode(_mid(market_id))))
        return MarketParams(mmr=int(cfg[3]), fee_ratio=int(cfg[4]), reward_share=int(cfg[9]))

    async def cumulative_funding_index(self, market_id: str, block: int | str = "latest") -> int:
        raw = await self.call(self._funding.encode(_mid(market_id)), block)
        return int(self._funding.decode(raw)[0])

    async def market_ids(self) -> list[str]:
        (ids,) = self._market_ids.decode(await self.call(self._market_ids.encode()))
        return ["0x" + bytes(m).hex() for m in ids]

    async def positions_health(
        self, token_ids: list[int], block: int | str = "latest"
    ) -> list[OnchainHealth]:
        raw = await self.call(self._health.encode(token_ids), block)
        (rows,) = self._health.decode(raw)
        return [
            OnchainHealth(int(r[0]), bool(r[1]), bool(r[2]), int(r[3]), int(r[4]), int(r[5]))
            for r in rows
        ]

    async def position(self, token_id: int, owner: str = "") -> tuple[int, BookPosition | None]:
        """(block read at, the position or None when it does not exist)."""
        block = await self.block_number()
        (p,) = self._position.decode(await self.call(self._position.encode(token_id), block))
        if int(p[4]) == 0:
            return block, None
        return block, BookPosition(
            token_id=token_id,
            market_id="0x" + bytes(p[0]).hex(),
            owner=owner,
            is_long=bool(p[1]),
            collateral=int(p[2]),
            size=int(p[4]),
            notional=int(p[5]),
            entry_funding_index=int(p[7]),
            updated=(block, END_OF_BLOCK),
        )

    def liquidation_tx(self, token_id: int) -> dict[str, Any]:
        return {"to": self.address, "data": self._liquidate.encode(token_id)}

    def liquidation_result(self, raw: bytes) -> tuple[int, int] | None:
        """(closed, reward) from a liquidatePosition simulation's return data; None when it
        returned nothing (a deployment from before it returned them)."""
        if len(raw) < 64:
            return None
        closed, reward = abi_decode(["uint256", "uint256"], raw[:64])
        return int(closed), int(reward)

    async def liquidators(self, token_id: int, from_block: int, to_block: int) -> list[str]:
        """The liquidator of every PositionLiquidated of `token_id` mined in the range."""
        logs = await self._request(
            "eth_getLogs",
            [
                {
                    "address": self.address,
                    "topics": [self._liquidated_topic, "0x" + f"{token_id:064x}"],
                    "fromBlock": hex(from_block),
                    "toBlock": hex(to_block),
                }
            ],
        )
        # data: liquidator (address, the first non-indexed word), price, ...
        return ["0x" + str(lg["data"])[26:66] for lg in logs]
