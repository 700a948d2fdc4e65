"""Rank the book's positions by distance to liquidation at the current index prices (pure).

For each position the book caches a trigger price (margin_buffer above maintenance, slightly
widened for float error), recomputed only when the position, its market's funding or the
maintenance ratio changes. A new price then selects the few positions past their trigger with
one comparison each; those get the exact integer margin math, and the ones within the buffer
(margin < maintenance x (1 + MARGIN_BUFFER)) are returned, the most underwater first. Only
these are confirmed on-chain.
"""

from __future__ import annotations

from dataclasses import dataclass

from services.keeper.book import PositionBook
from services.keeper.margin import WAD, Health, health, trigger_price

PREFILTER_SLACK = 0.01  # widen the float pre-filter well beyond float rounding


@dataclass(frozen=True, slots=True)
class Candidate:
    token_id: int
    market_id: str
    health: Health
    stamp: tuple[int, int, int]  # (index price, market version, position version)

    @property
    def liquidatable(self) -> bool:
        return self.health.liquidatable

    def sort_key(self) -> tuple[bool, float]:
        return (not self.health.liquidatable, self.health.ratio())


class Ranker:
    def __init__(self, buffer: float):
        if buffer < 0:
            raise ValueError("margin buffer must be >= 0")
        self.buffer_wad = round(buffer * WAD)
        self._factor = 1.0 + buffer + PREFILTER_SLACK
        # token -> ((position version, market version), trigger price)
        self._triggers: dict[int, tuple[tuple[int, int], float]] = {}

    def forget(self, token_id: int) -> None:
        self._triggers.pop(token_id, None)

    def _trigger(self, book: PositionBook, token_id: int, market_version: int, mmr: int) -> float:
        pos = book.positions[token_id]
        stamp = (pos.version, market_version)
        cached = self._triggers.get(token_id)
        if cached is not None and cached[0] == stamp:
            return cached[1]
        market = book.markets[pos.market_id]
        value = trigger_price(
            pos.is_long,
            pos.collateral,
            pos.size,
            pos.notional,
            book.entry_funding(pos),
            market.cumulative_for(pos.is_long),
            mmr,
            self._factor,
        )
        self._triggers[token_id] = (stamp, value)
        return value

    def candidates(self, book: PositionBook, prices: dict[str, int]) -> list[Candidate]:
        """Positions within the buffer at `prices` (market id -> index price, WAD), ranked."""
        out: list[Candidate] = []
        for market_id, price in prices.items():
            market = book.markets.get(market_id)
            if market is None or market.mmr is None or price <= 0:
                continue
            mmr, mver = market.mmr, market.version
            hi = price * (1 + 1e-12)
            lo = price * (1 - 1e-12)
            for token_id in book.tokens_in(market_id):
                pos = book.positions[token_id]
                trig = self._trigger(book, token_id, mver, mmr)
                if (pos.is_long and lo > trig) or (not pos.is_long and hi < trig):
                    continue
                h = health(
                    pos.is_long,
                    pos.collateral,
                    pos.size,
                    pos.notional,
                    book.entry_funding(pos),
                    market.cumulative_for(pos.is_long),
                    price,
                    mmr,
                )
                if h.liquidatable or h.within(self.buffer_wad):
                    out.append(Candidate(token_id, market_id, h, (price, mver, pos.version)))
        out.sort(key=Candidate.sort_key)
        # drop cache entries of positions that left the book
        if len(self._triggers) > 2 * max(len(book), 1024):
            self._triggers = {t: v for t, v in self._triggers.items() if t in book.positions}
        return out
