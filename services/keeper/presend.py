"""The last look before a liquidation is sent: simulate it on the pending block, price it.

1. eth_estimateGas on the latest block: the gas it uses (the limit sent is that x
   GAS_MULTIPLIER; TxSender does not estimate again). A revert here sends nothing.
2. The fees the transaction will carry (TxSender's, cached for the poll interval).
3. eth_call on the *pending* block, just before signing: the latest block plus the
   transactions the node holds for the next one, so a competitor's liquidation already
   broadcast is seen (pending.py: the liquidations waiting at this step are simulated together,
   in one call). A revert sends nothing; races.classify_revert says what it means (a lost
   race: the position is gone or healthy). Its return value is (closed, reward): what this
   liquidation unwinds and earns at that state (a partial unwind earns its part).
4. Profitability (profit.py): reward >= gas x gas price x native price x KEEPER_MIN_PROFIT_RATIO,
   or the liquidation is skipped (nothing sent; checked again next block, when the gas price or
   the position may have changed). Without a native price (the market's oracle does not
   answer) the liquidation is sent: never skipped for want of a price.

On a node that keeps no pending block (some providers answer "pending" with the latest block)
step 3 sees only mined competitors; a race lost in the same block then costs one reverted
transaction, which the executor counts as a lost race too.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from services.keeper.chain import ChainReader, MarketParams
from services.keeper.pending import PendingSimulator, SimResult, simulate_one
from services.keeper.profit import Assessment, assess, gas_price_wei, reward_for
from services.keeper.races import RevertClass, classify_mined_revert, classify_revert
from shared.chain.errors import TxRevertedError
from shared.chain.tx import TxSender

log = logging.getLogger("perpex.keeper.presend")

PRICE_MAX_AGE_S = 300.0  # an index price older than this is not used for the native price


class NativePrice:
    """The native token's price in collateral units (WAD): KEEPER_NATIVE_PRICE when set, else
    the index price of KEEPER_NATIVE_PRICE_MARKET, taken from each health round when the
    keeper serves that market and read on its own at most every `refresh_s` otherwise."""

    def __init__(
        self,
        fixed_wad: int | None,
        market_id: str | None,
        chain: ChainReader,
        refresh_s: float = 10.0,
    ):
        self.fixed = fixed_wad
        self.market_id = market_id.lower() if market_id else None
        self.chain = chain
        self.refresh_s = refresh_s
        self._value: int | None = None
        self._at = float("-inf")

    def observe(self, prices: dict[str, int]) -> None:
        """A health round's index prices (market id -> WAD)."""
        if self.market_id is not None and prices.get(self.market_id, 0) > 0:
            self._value, self._at = prices[self.market_id], time.monotonic()

    async def refresh(self) -> None:
        """Read the market's index price unless a round gave it recently."""
        if self.fixed is not None or self.market_id is None:
            return
        if time.monotonic() - self._at < self.refresh_s:
            return
        price = await self.chain.index_price(self.market_id)
        if price > 0:
            self._value, self._at = price, time.monotonic()

    def current(self) -> int | None:
        if self.fixed is not None:
            return self.fixed
        if self._value is None or time.monotonic() - self._at > PRICE_MAX_AGE_S:
            return None
        return self._value


@dataclass(frozen=True, slots=True)
class Go:
    estimated_gas: int
    closed: int | None  # base size the liquidation unwinds (None: not returned)
    assessment: Assessment | None  # None: not assessed (ratio 0, or no native price)


@dataclass(frozen=True, slots=True)
class Skip:
    reason: str  # metric label: races.RevertClass.reason, or "unprofitable"
    stage: str  # "latest" (the estimate), "pending" (the pending-block call), "profit"
    detail: str
    revert: RevertClass | None = None  # None: unprofitable
    assessment: Assessment | None = None


class PreSend:
    def __init__(
        self,
        sender: TxSender,
        chain: ChainReader,
        native: NativePrice,
        min_ratio_wad: int,
        market_params: Callable[[str], MarketParams | None] = lambda _m: None,
        pending: PendingSimulator | None = None,
    ):
        self.sender = sender
        self.chain = chain
        self.native = native
        self.min_ratio_wad = min_ratio_wad
        self.market_params = market_params
        self.pending = pending  # None: one eth_call per liquidation
        self._logged: dict[int, float] = {}  # token -> when its skip was last logged at INFO
        self._no_price_logged = float("-inf")

    async def check(
        self, token_id: int, market_id: str, tx: dict[str, Any], size: int = 0, index: int = 0
    ) -> Go | Skip:
        """Both looks in turn (the executor holds the send window between them)."""
        gas = await self.first_look(tx)
        if isinstance(gas, Skip):
            return gas
        return await self.last_look(token_id, market_id, tx, gas, size, index)

    async def first_look(self, tx: dict[str, Any]) -> int | Skip:
        """Step 1: the gas estimate on the latest block (a revert there: Skip)."""
        try:
            return await self.sender.estimate(tx)
        except TxRevertedError as exc:
            return self._reverted(exc, "latest")

    async def last_look(
        self,
        token_id: int,
        market_id: str,
        tx: dict[str, Any],
        gas: int,
        size: int = 0,
        index: int = 0,
    ) -> Go | Skip:
        """Steps 2-4, just before signing: fees, the pending-block simulation, the price."""
        base_fee, fees = await self.sender.current_fees()
        sim = await self._pending(token_id, tx)
        if not sim.ok:
            data = "0x" + sim.data.hex() if sim.data else None
            reason = sim.reason or self.sender.decoder.decode(data)
            return self._reverted(TxRevertedError(reason, data), "pending")
        result = self.chain.liquidation_result(sim.data)
        closed = result[0] if result else None
        if self.min_ratio_wad == 0:
            return Go(gas, closed, None)
        if result is not None:
            reward = result[1]
        else:  # an older deployment: price the whole size (an upper bound)
            params = self.market_params(market_id)
            if params is None or not size or not index:
                return Go(gas, closed, None)
            reward = reward_for(size, index, params.fee_ratio, params.reward_share)
        native = self.native.current()
        if native is None:
            now = time.monotonic()
            if now - self._no_price_logged > 60:
                self._no_price_logged = now
                log.warning(
                    "no native token price (its market's oracle does not answer): "
                    "liquidations are sent without the profitability check"
                )
            return Go(gas, closed, None)
        verdict = assess(reward, gas, gas_price_wei(fees, base_fee), native, self.min_ratio_wad)
        if verdict.profitable:
            self._logged.pop(token_id, None)
            return Go(gas, closed, verdict)
        detail = (
            f"reward {verdict.reward / 1e18:.6f} < gas cost {verdict.cost / 1e18:.6f} x "
            f"KEEPER_MIN_PROFIT_RATIO {self.min_ratio_wad / 1e18:g} (gas {gas} at "
            f"{verdict.price_wei / 1e9:.3f} gwei, native price {native / 1e18:g})"
        )
        self._log_skip(token_id, detail)
        return Skip("unprofitable", "profit", detail, None, verdict)

    async def _pending(self, token_id: int, tx: dict[str, Any]) -> SimResult:
        if self.pending is not None:
            return await self.pending.simulate(token_id)
        return await simulate_one(self.sender.simulate, tx)

    def _reverted(self, exc: TxRevertedError, stage: str) -> Skip:
        decoded = self.sender.decoder.decode_error(exc.data)
        cls = classify_revert(decoded, exc.reason)
        return Skip(cls.reason, stage, exc.reason, cls)

    def _log_skip(self, token_id: int, detail: str) -> None:
        """INFO once per position per minute (it is checked again every block), DEBUG else."""
        now = time.monotonic()
        if now - self._logged.get(token_id, float("-inf")) < 60:
            log.debug("not liquidating %d: unprofitable: %s", token_id, detail)
            return
        if len(self._logged) > 10_000:
            self._logged = {t: at for t, at in self._logged.items() if now - at < 60}
        self._logged[token_id] = now
        log.info("not liquidating %d: unprofitable: %s", token_id, detail)

    async def mined_revert(self, token_id: int, decided_at: int, block: int | None) -> RevertClass:
        """Our liquidation of `token_id` was mined in `block` but reverted: a lost race when
        another liquidator's liquidation of it was mined since `decided_at` (the block the
        keeper found it liquidatable at)."""
        if block is None:
            return classify_mined_revert([], self.sender.address)
        liquidators = await self.chain.liquidators(token_id, decided_at + 1, block)
        return classify_mined_revert(liquidators, self.sender.address)
