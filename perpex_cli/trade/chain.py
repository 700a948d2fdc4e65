"""What `perpex trade` reads from and sends to the chain.

Everything is discovered from the PositionManager (its address from the deployment file or a
flag): the vault, NFT and collateral token through its getters, the markets through
`marketIds()` / `getMarket()` and each vAMM's `pair()`. Transactions go through the project's
`TxSender` (simulate, estimate x multiplier, EIP-1559 fees, nonce, confirm / replace), so a
revert is caught by the simulation, before anything is broadcast, and decoded by an
`ErrorDecoder` over every contract a trade can revert in.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from eth_utils import is_address, keccak, to_checksum_address
from pydantic import SecretStr
from web3 import AsyncWeb3
from web3.contract import AsyncContract
from web3.logs import DISCARD

from shared.chain.abi import load_abi
from shared.chain.client import async_web3
from shared.chain.deployment import Deployment
from shared.chain.errors import ErrorDecoder
from shared.chain.tx import TxSender

# Contracts whose errors a trade can surface (the vault's and the vAMM's bubble up through the
# PositionManager, the oracle's through its price reads).
ERROR_SOURCES = (
    "PositionManager",
    "Vault",
    "VirtualAMM",
    "PriceOracle",
    "PositionNFT",
    "CollateralToken",
)

SIG_OPEN = "openPosition(bytes32,bool,uint256,uint256,uint256,uint256,uint256)"
SIG_CLOSE = "closePosition(uint256,uint256,uint256,uint256)"
SIG_REDUCE = "reducePosition(uint256,uint256,uint256,uint256,uint256)"
DEFAULT_DEPLOYMENT = Path(".perpex/deployment.json")
LOG_CHUNK = 50_000
# Added to each gas limit: the estimate runs on the latest block, where a position's funding
# may not have accrued yet; in the block that mines the trade it has, and settling it (a vault
# write that may go from zero to non-zero) costs up to ~45k more. Unused gas is not charged.
GAS_HEADROOM = 80_000


class BadInput(ValueError):
    """Input the chain refuses to take, caught before anything is sent (exit 2)."""


class ConfigProblem(BadInput):
    """The connection settings are wrong (exit 2)."""


class ChainProblem(RuntimeError):
    """The chain does not answer as expected (failure: exit 1)."""


@dataclass(frozen=True)
class Connection:
    rpc_url: str
    deployment: Path | None  # explicit --deployment / $DEPLOYMENT_FILE
    position_manager: str | None
    chain_id: int | None
    from_block: int | None = None


@dataclass(frozen=True)
class Market:
    pair: str
    market_id: bytes
    vamm: str
    max_leverage: int
    mmr: int
    liquidation_fee_ratio: int
    funding_interval: int
    max_funding_rate: int
    paused: bool
    min_notional: int
    liquidation_reward_share: int
    max_spread: int
    fee_ratio: int
    max_price_impact: int
    max_move_per_block: int

    @property
    def base(self) -> str:
        return self.pair.split("/")[0]

    @property
    def market_id_hex(self) -> str:
        return "0x" + self.market_id.hex()


@dataclass(frozen=True)
class MarketQuote:
    index: int  # 0: the oracle cannot answer
    mark: int
    cum_long: int
    cum_short: int
    long_size: int
    short_size: int
    funding_rate: int  # per funding interval, positive: longs pay
    funding_per_second: int
    next_funding_time: int
    timestamp: int  # the latest block's

    def cumulative(self, is_long: bool) -> int:
        return self.cum_long if is_long else self.cum_short


@dataclass(frozen=True)
class Position:
    token_id: int
    owner: str
    market_id: bytes
    is_long: bool
    collateral: int
    leverage: int
    size: int
    notional: int
    entry_price: int
    entry_funding_index: int
    opened_at: int
    opened_block: int


class Chain:
    def __init__(
        self,
        w3: AsyncWeb3,
        chain_id: int,
        pm: AsyncContract,
        vault: AsyncContract,
        token: AsyncContract,
        nft: AsyncContract,
        markets: dict[str, Market],
        start_block: int,
    ):
        self.w3 = w3
        self.chain_id = chain_id
        self.pm = pm
        self.vault = vault
        self.token = token
        self.nft = nft
        self.markets = markets
        self.start_block = start_block
        self.decoder = ErrorDecoder([load_abi(n) for n in ERROR_SOURCES])
        self._by_id = {m.market_id: m for m in markets.values()}

    # ---------------------------------------------------------------- connecting

    @classmethod
    async def connect(cls, conn: Connection) -> Chain:
        pm_address, deployment = _resolve(conn)
        expected = conn.chain_id
        if deployment is not None:
            if expected is not None and expected != deployment.chain_id:
                raise ConfigProblem(
                    f"CHAIN_ID / --chain-id is {expected} but the deployment file is for chain "
                    f"{deployment.chain_id}"
                )
            expected = deployment.chain_id
        if expected is None:
            raise ConfigProblem(
                "set --chain-id or CHAIN_ID: the node's chain id is checked before anything "
                "is read or signed"
            )
        w3 = async_web3(conn.rpc_url, timeout=30.0)
        try:
            return await cls._connect(w3, conn, pm_address, deployment, expected)
        except BaseException:
            disconnect = getattr(w3.provider, "disconnect", None)
            if disconnect is not None:
                try:
                    await disconnect()
                except Exception:  # closing is best effort
                    pass
            raise

    @classmethod
    async def _connect(
        cls,
        w3: AsyncWeb3,
        conn: Connection,
        pm_address: str,
        deployment: Deployment | None,
        expected: int,
    ) -> Chain:
        try:
            reported = int(await w3.eth.chain_id)
        except Exception as exc:
            raise ChainProblem(f"cannot reach the RPC endpoint ({type(exc).__name__})") from None
        if reported != expected:
            raise ConfigProblem(
                f"chain id mismatch: the node reports {reported}, expected {expected}"
            )
        code = await w3.eth.get_code(to_checksum_address(pm_address))
        if not code or bytes(code) == b"":
            raise ChainProblem(f"no contract at the PositionManager address {pm_address}")
        pm = _contract(w3, pm_address, "PositionManager")
        vault_addr, nft_addr = await asyncio.gather(
            pm.functions.vault().call(), pm.functions.nft().call()
        )
        vault = _contract(w3, vault_addr, "Vault")
        token_addr = await vault.functions.collateralToken().call()
        markets = await _load_markets(w3, pm)
        start = conn.from_block
        if start is None:
            start = deployment.start_block if deployment is not None else 0
        return cls(
            w3,
            reported,
            pm,
            vault,
            _contract(w3, token_addr, "CollateralToken"),
            _contract(w3, nft_addr, "PositionNFT"),
            markets,
            start,
        )

    async def close(self) -> None:
        disconnect = getattr(self.w3.provider, "disconnect", None)
        if disconnect is not None:
            try:
                await disconnect()
            except Exception:  # closing is best effort
                pass

    # ---------------------------------------------------------------- reads

    def market(self, pair: str) -> Market:
        """The market named `pair` (case-insensitive); BadInput naming those that exist."""
        wanted = pair.strip().upper()
        for name, m in self.markets.items():
            if name.upper() == wanted:
                return m
        raise BadInput(f"unknown market {pair!r}; markets: {', '.join(self.markets) or '(none)'}")

    def market_by_id(self, market_id: bytes) -> Market:
        return self._by_id[market_id]

    async def state(self, market: Market) -> MarketQuote:
        mid = market.market_id
        f = self.pm.functions
        (
            (index, mark, cum_long, cum_short, long_size, short_size),
            rate,
            speed,
            nxt,
            block,
        ) = await asyncio.gather(
            f.marketState(mid).call(),
            f.fundingRate(mid).call(),
            f.fundingPerSecond(mid).call(),
            f.nextFundingTime(mid).call(),
            self.w3.eth.get_block("latest"),
        )
        return MarketQuote(
            index=int(index),
            mark=int(mark),
            cum_long=int(cum_long),
            cum_short=int(cum_short),
            long_size=int(long_size),
            short_size=int(short_size),
            funding_rate=int(rate),
            funding_per_second=int(speed),
            next_funding_time=int(nxt),
            timestamp=int(block["timestamp"]),
        )

    async def quote_open(
        self, market: Market, is_long: bool, collateral: int, leverage: int
    ) -> tuple[int, int, int, int]:
        """(size, entry price, fee, price impact) from PositionManager.quoteOpen."""
        size, price, fee, impact = await self.pm.functions.quoteOpen(
            market.market_id, is_long, collateral, leverage
        ).call()
        return int(size), int(price), int(fee), int(impact)

    async def quote_close_part(
        self, market: Market, is_long: bool, size: int
    ) -> tuple[int, int, int, int]:
        """(quote amount, exit price, fee, price impact) of closing `size` on the market's vAMM."""
        vamm = _contract(self.w3, market.vamm, "VirtualAMM")
        q, price, fee, impact = await vamm.functions.quoteClose(is_long, size).call()
        return int(q), int(price), int(fee), int(impact)

    async def position(self, token_id: int) -> Position | None:
        """The open position `token_id` with its owner; None when it does not exist (or closed)."""
        raw, owner = await asyncio.gather(
            self.pm.functions.getPosition(token_id).call(),
            self.pm.functions.positionOwner(token_id).call(),
        )
        market_id, is_long, collateral, leverage, size, notional, entry, efi, at, blk = raw
        if int(size) == 0:
            return None
        return Position(
            token_id=token_id,
            owner=to_checksum_address(owner),
            market_id=bytes(market_id),
            is_long=bool(is_long),
            collateral=int(collateral),
            leverage=int(leverage),
            size=int(size),
            notional=int(notional),
            entry_price=int(entry),
            entry_funding_index=int(efi),
            opened_at=int(at),
            opened_block=int(blk),
        )

    async def pending_funding(self, token_id: int) -> int:
        return int(await self.pm.functions.pendingFunding(token_id).call())

    async def health(self, token_id: int) -> tuple[bool, int, int, int]:
        """(liquidatable, margin, maintenance, index) from getPositionHealth."""
        _tid, _exists, liquidatable, margin, mm, index = await self.pm.functions.getPositionHealth(
            token_id
        ).call()
        return bool(liquidatable), int(margin), int(mm), int(index)

    async def free_collateral(self, account: str) -> int:
        return int(await self.vault.functions.freeCollateral(account).call())

    async def token_balance(self, account: str) -> int:
        return int(await self.token.functions.balanceOf(account).call())

    async def allowance(self, account: str) -> int:
        return int(await self.token.functions.allowance(account, self.vault.address).call())

    async def faucet_limits(self) -> tuple[bool, int]:
        enabled, limit = await asyncio.gather(
            self.token.functions.faucetEnabled().call(), self.token.functions.faucetLimit().call()
        )
        return bool(enabled), int(limit)

    async def latest_timestamp(self) -> int:
        return int((await self.w3.eth.get_block("latest"))["timestamp"])

    async def position_ids(self, owner: str) -> list[int]:
        """Open positions of `owner`: PositionMinted logs to `owner` (newest first, in chunks,
        back to the deployment's start block), kept while the PositionManager says they are
        open and theirs; stops once as many as the NFT balance are found."""
        owner = to_checksum_address(owner)
        want = int(await self.nft.functions.balanceOf(owner).call())
        if want == 0:
            return []
        topic0 = "0x" + keccak(text="PositionMinted(uint256,address,bytes32)").hex()
        owner_topic = "0x" + "00" * 12 + owner[2:].lower()
        head = int(await self.w3.eth.block_number)
        found: list[int] = []
        hi = head
        while hi >= self.start_block and len(found) < want:
            lo = max(self.start_block, hi - LOG_CHUNK + 1)
            logs = await self.w3.eth.get_logs(
                {
                    "address": self.nft.address,
                    "topics": [topic0, None, owner_topic],
                    "fromBlock": lo,
                    "toBlock": hi,
                }
            )
            ids = sorted({int.from_bytes(bytes(log["topics"][1]), "big") for log in logs})
            owners = await asyncio.gather(*(self.pm.functions.positionOwner(i).call() for i in ids))
            found.extend(
                i for i, o in zip(ids, owners, strict=True) if to_checksum_address(o) == owner
            )
            hi = lo - 1
        return sorted(set(found))

    # ---------------------------------------------------------------- transactions

    def sender(self, key: SecretStr) -> TxSender:
        return TxSender(
            self.w3,
            key,
            self.chain_id,
            gas_multiplier=1.2,
            max_retries=3,
            error_decoder=self.decoder,
            poll_s=0.1,
            replace_after_s=30.0,
            confirm_timeout_s=300.0,
            backoff_initial_s=0.25,
            gas_headroom=GAS_HEADROOM,
        )

    def encode_open(
        self,
        market: Market,
        is_long: bool,
        collateral: int,
        leverage: int,
        limit: int,
        fee_cap: int,
        deadline: int,
    ) -> dict[str, Any]:
        data = self.pm.encode_abi(
            SIG_OPEN,
            args=[market.market_id, is_long, collateral, leverage, limit, fee_cap, deadline],
        )
        return {"to": self.pm.address, "data": data}

    def encode_close(
        self, token_id: int, limit: int, fee_cap: int, deadline: int
    ) -> dict[str, Any]:
        data = self.pm.encode_abi(SIG_CLOSE, args=[token_id, limit, fee_cap, deadline])
        return {"to": self.pm.address, "data": data}

    def encode_reduce(
        self, token_id: int, size: int, limit: int, fee_cap: int, deadline: int
    ) -> dict[str, Any]:
        data = self.pm.encode_abi(SIG_REDUCE, args=[token_id, size, limit, fee_cap, deadline])
        return {"to": self.pm.address, "data": data}

    def encode_margin(self, add: bool, token_id: int, amount: int) -> dict[str, Any]:
        name = "addMargin" if add else "removeMargin"
        return {"to": self.pm.address, "data": self.pm.encode_abi(name, args=[token_id, amount])}

    def encode_token(self, name: str, args: Sequence[Any]) -> dict[str, Any]:
        return {"to": self.token.address, "data": self.token.encode_abi(name, args=list(args))}

    def encode_vault(self, name: str, args: Sequence[Any]) -> dict[str, Any]:
        return {"to": self.vault.address, "data": self.vault.encode_abi(name, args=list(args))}

    def events(self, receipt: dict[str, Any], contract: AsyncContract, name: str) -> list[Any]:
        """Decoded `name` events `contract` emitted in the receipt."""
        ev = getattr(contract.events, name)()
        own = {
            **receipt,
            "logs": [
                log
                for log in receipt["logs"]
                if to_checksum_address(log["address"]) == contract.address
            ],
        }
        return [e["args"] for e in ev.process_receipt(own, errors=DISCARD)]


def _contract(w3: AsyncWeb3, address: str, name: str) -> AsyncContract:
    return w3.eth.contract(address=to_checksum_address(address), abi=load_abi(name))


def _resolve(conn: Connection) -> tuple[str, Deployment | None]:
    """The PositionManager's address, and the deployment file when one is used."""
    if conn.position_manager:
        if not is_address(conn.position_manager):
            raise ConfigProblem(
                f"--position-manager / POSITION_MANAGER_ADDRESS is not an address: "
                f"{conn.position_manager!r}"
            )
        return to_checksum_address(conn.position_manager), None
    path = conn.deployment
    if path is None:
        if not DEFAULT_DEPLOYMENT.exists():
            raise ConfigProblem(
                "no deployment: set DEPLOYMENT_FILE or --deployment (the file `perpex deploy` "
                "writes), or --position-manager / POSITION_MANAGER_ADDRESS"
            )
        path = DEFAULT_DEPLOYMENT
    try:
        deployment = Deployment.load(path)
    except FileNotFoundError:
        raise ConfigProblem(f"deployment file {path} not found") from None
    except Exception as exc:
        raise ConfigProblem(f"deployment file {path} is not valid ({type(exc).__name__})") from None
    return deployment.contracts.position_manager, deployment


async def _load_markets(w3: AsyncWeb3, pm: AsyncContract) -> dict[str, Market]:
    ids = [bytes(m) for m in await pm.functions.marketIds().call()]
    configs = await asyncio.gather(*(pm.functions.getMarket(m).call() for m in ids))
    out: dict[str, Market] = {}
    for mid, cfg in zip(ids, configs, strict=True):
        (
            vamm_addr,
            _feed,
            max_lev,
            mmr,
            liq_fee,
            interval,
            max_rate,
            paused,
            min_notional,
            reward_share,
            max_spread,
        ) = cfg
        vamm = _contract(w3, vamm_addr, "VirtualAMM")
        pair, fee_ratio, impact, per_block = await asyncio.gather(
            vamm.functions.pair().call(),
            vamm.functions.feeRatio().call(),
            vamm.functions.maxPriceImpact().call(),
            vamm.functions.maxPriceMovePerBlock().call(),
        )
        out[str(pair)] = Market(
            pair=str(pair),
            market_id=mid,
            vamm=to_checksum_address(vamm_addr),
            max_leverage=int(max_lev),
            mmr=int(mmr),
            liquidation_fee_ratio=int(liq_fee),
            funding_interval=int(interval),
            max_funding_rate=int(max_rate),
            paused=bool(paused),
            min_notional=int(min_notional),
            liquidation_reward_share=int(reward_share),
            max_spread=int(max_spread),
            fee_ratio=int(fee_ratio),
            max_price_impact=int(impact),
            max_move_per_block=int(per_block),
        )
    return out
