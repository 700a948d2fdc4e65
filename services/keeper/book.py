"""The keeper's position book: open positions and per-market funding state (pure, no I/O).

Filled from the indexer's PostgreSQL tables at start (`upsert`), then kept current by applying
the decoded events from Kafka (`apply`):

- idempotent: an event is applied once per (event_id, block_hash, reverted); re-deliveries are
  reported as duplicates. A reorg that re-includes a log in another block gives it a new block
  hash, so the re-included event is applied again after its compensating `reverted` copy.
- ordered per position: a non-reverted event older than the state already held (bootstrap
  rows carry the block they reflect) is stale and skipped, and positions known closed are
  tombstoned, so replays after a bootstrap never resurrect or roll back a position.
- `reverted` (compensating) events cannot be undone from the event alone (a reverted close
  would need the state before it), so the result asks the caller to re-read the position from
  the chain (`refresh`).
- a liquidation may be partial (event schema v2): PositionLiquidated with a `remainingSize`
  leaves the position in the book and the PositionReduced after it carries its new size,
  notional and collateral; only a full liquidation (remainingSize 0) removes it.
- a position's entry funding index is the one its PositionOpened / MarginChanged /
  PositionReduced carries (bootstrap rows and chain reads carry it too). Funding accrues every
  second (zero-sum: each side on its own index), so a market's current indexes are not in any
  event: the health loop reads them from the chain with the index price each block
  (`BookMarket.set_cumulative`).
"""

from __future__ import annotations

import functools
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from shared.events.names import EventName
from shared.events.schema import EventEnvelope

Pos = tuple[int, int]  # (block number, log index)
END_OF_BLOCK = 2**31  # log index after every log of a block
POSITION_EVENTS = frozenset(
    {
        EventName.PositionMinted,
        EventName.PositionOpened,
        EventName.MarginChanged,
        EventName.PositionClosed,
        EventName.PositionLiquidated,
        EventName.PositionReduced,
        EventName.PositionBurned,
    }
)
REMOVING_EVENTS = frozenset(
    {EventName.PositionClosed, EventName.PositionLiquidated, EventName.PositionBurned}
)


def removes(ev: EventEnvelope) -> bool:
    """Whether the event ends the position (a partial liquidation does not)."""
    if ev.name == EventName.PositionLiquidated:
        return int(ev.args.get("remainingSize", 0)) == 0
    return ev.name in REMOVING_EVENTS


@dataclass(slots=True)
class BookPosition:
    token_id: int
    market_id: str  # 0x lower-case bytes32
    owner: str
    is_long: bool
    collateral: int
    size: int
    notional: int
    entry_funding_index: int  # the market's cumulative funding index it accrues from
    updated: Pos  # the newest chain position this state reflects
    trace: dict[str, str] | None = None  # W3C carrier of the last event applied
    version: int = 0


@dataclass
class BookMarket:
    market_id: str
    pair: str | None = None
    mmr: int | None = None  # maintenance margin ratio (WAD), read from the chain
    paused: bool = False
    # each side's cumulative funding index at the last block read (funding is zero-sum: each side
    # has its own)
    cumulative_long: int = 0
    cumulative_short: int = 0
    version: int = 0

    def _touch(self) -> None:
        self.version += 1

    def cumulative_for(self, is_long: bool) -> int:
        return self.cumulative_long if is_long else self.cumulative_short

    def set_cumulative(self, long: int, short: int) -> bool:
        """The indexes read from the chain; True when one moved (cached triggers are stale)."""
        if (long, short) == (self.cumulative_long, self.cumulative_short):
            return False
        self.cumulative_long, self.cumulative_short = long, short
        self._touch()
        return True

    def set_mmr(self, mmr: int) -> None:
        if mmr != self.mmr:
            self.mmr = mmr
            self._touch()


@dataclass(frozen=True)
class ApplyResult:
    status: str  # applied | duplicate | stale | ignored
    refresh: tuple[int, ...] = ()  # tokens to re-read from the chain
    markets: tuple[str, ...] = ()  # markets whose configuration should be re-read

    @property
    def applied(self) -> bool:
        return self.status == "applied"


DUPLICATE = ApplyResult("duplicate")
STALE = ApplyResult("stale")
IGNORED = ApplyResult("ignored")
APPLIED = ApplyResult("applied")


class _Lru:
    def __init__(self, capacity: int):
        self.capacity = capacity
        self._d: OrderedDict[Any, Any] = OrderedDict()

    def __contains__(self, key: Any) -> bool:
        return key in self._d

    def get(self, key: Any) -> Any:
        return self._d.get(key)

    def put(self, key: Any, value: Any = True) -> None:
        self._d[key] = value
        self._d.move_to_end(key)
        while len(self._d) > self.capacity:
            self._d.popitem(last=False)

    def pop(self, key: Any) -> None:
        self._d.pop(key, None)

    def __len__(self) -> int:
        return len(self._d)


def _norm(market_id: str) -> str:
    return "0x" + market_id.removeprefix("0x").lower()


class PositionBook:
    def __init__(
        self,
        owns: Callable[[int], bool] | None = None,
        dedup_capacity: int = 200_000,
        tombstone_capacity: int = 200_000,
    ):
        self._owns = owns or (lambda _t: True)
        self.positions: dict[int, BookPosition] = {}
        self.markets: dict[str, BookMarket] = {}
        self._by_market: dict[str, set[int]] = {}
        self._seen = _Lru(dedup_capacity)
        self._tombstones = _Lru(tombstone_capacity)
        self.version = 0  # bumps on every change

    # ---- ownership ----
    def owns(self, token_id: int) -> bool:
        return self._owns(token_id)

    def set_owner_filter(self, owns: Callable[[int], bool]) -> list[int]:
        """Keep only the positions `owns` accepts; returns the token ids dropped."""
        self._owns = owns
        dropped = [t for t in self.positions if not owns(t)]
        for t in dropped:
            self.remove(t, tombstone=False)
        return dropped

    # ---- markets ----
    def market(self, market_id: str) -> BookMarket:
        key = _norm(market_id)
        state = self.markets.get(key)
        if state is None:
            state = self.markets[key] = BookMarket(key)
            self._by_market.setdefault(key, set())
        return state

    def set_cumulative(self, market_id: str, long: int, short: int) -> None:
        if self.market(market_id).set_cumulative(long, short):
            self.version += 1

    def entry_funding(self, pos: BookPosition) -> int:
        return pos.entry_funding_index

    # ---- positions ----
    def __len__(self) -> int:
        return len(self.positions)

    def __contains__(self, token_id: object) -> bool:
        return token_id in self.positions

    def get(self, token_id: int) -> BookPosition | None:
        return self.positions.get(token_id)

    def tokens_in(self, market_id: str) -> set[int]:
        return self._by_market.get(_norm(market_id), set())

    def iter_market(self, market_id: str) -> Iterator[BookPosition]:
        for t in self.tokens_in(market_id):
            yield self.positions[t]

    def is_tombstoned(self, token_id: int) -> bool:
        return token_id in self._tombstones

    def upsert(self, pos: BookPosition, force: bool = False) -> bool:
        """Insert or replace a position (bootstrap row or chain read). Unless `force`, a state
        older than the one held, or a tombstoned token, is refused."""
        if not self.owns(pos.token_id):
            return False
        if not force and pos.token_id in self._tombstones:
            return False
        pos.market_id = _norm(pos.market_id)
        held = self.positions.get(pos.token_id)
        if held is not None and not force and pos.updated < held.updated:
            return False
        if force:
            self._tombstones.pop(pos.token_id)
        if held is not None and held.market_id != pos.market_id:
            self._by_market.get(held.market_id, set()).discard(pos.token_id)
        # the book's version, not the held row's + 1: a token removed and loaded again (a
        # partition that came back) must not reuse a version a ranking cache still holds
        pos.version = self.version + 1
        if held is not None and pos.trace is None:
            pos.trace = held.trace
        self.positions[pos.token_id] = pos
        self.market(pos.market_id)
        self._by_market[pos.market_id].add(pos.token_id)
        self.version += 1
        return True

    def remove(self, token_id: int, tombstone: bool = True, at: Pos | None = None) -> bool:
        if tombstone:
            self._tombstones.put(token_id, at)
        pos = self.positions.pop(token_id, None)
        if pos is None:
            return False
        self._by_market.get(pos.market_id, set()).discard(token_id)
        self.version += 1
        return True

    # ---- events ----
    def apply(self, event: EventEnvelope, trace: dict[str, str] | None = None) -> ApplyResult:
        key = (event.event_id, event.block_hash, event.reverted)
        if key in self._seen:
            return DUPLICATE
        if event.token_id is not None and not self.owns(event.token_id):
            return IGNORED  # another replica's partition
        result = self._apply(event, trace)
        self._seen.put(key)
        # An event and its revert alternate when a reorg switches forks and back: each one
        # makes the other new again (an exact redelivery is still a duplicate).
        self._seen.pop((event.event_id, event.block_hash, not event.reverted))
        return result

    def _apply(self, ev: EventEnvelope, trace: dict[str, str] | None) -> ApplyResult:
        if ev.name in POSITION_EVENTS:
            return self._position_event(ev, trace)
        handler = self._market_handlers.get(ev.name)
        if handler is None:
            return IGNORED
        market_id = ev.market_id or ev.args.get("marketId")
        if not market_id:
            return IGNORED
        return handler(self.market(str(market_id)), ev)

    @functools.cached_property
    def _market_handlers(self) -> dict[str, Callable[[BookMarket, EventEnvelope], ApplyResult]]:
        """One handler per market event the book follows."""
        return {
            EventName.FundingRateUpdated: self._funding_updated,
            EventName.MarketAdded: self._market_added,
            EventName.MarketPaused: self._market_paused,
            EventName.RiskParamsUpdated: self._risk_params_updated,
        }

    def _position_event(self, ev: EventEnvelope, trace: dict[str, str] | None) -> ApplyResult:
        token = ev.token_id
        if token is None:
            return IGNORED
        at: Pos = (ev.block_number, ev.log_index)
        if ev.reverted:
            return ApplyResult("applied", refresh=(token,))
        if removes(ev):
            self.remove(token, tombstone=True, at=at)
            return APPLIED
        if ev.name in (EventName.PositionMinted, EventName.PositionLiquidated):
            return IGNORED  # a partial liquidation: PositionReduced carries the new state
        if token in self._tombstones:
            return STALE
        held = self.positions.get(token)
        if held is not None and at <= held.updated:
            return STALE
        if ev.name == EventName.PositionOpened:
            return self._opened(ev, token, at, trace)
        if ev.name in (EventName.MarginChanged, EventName.PositionReduced):
            if held is None:
                # Opened before what this replica knows: read the whole position.
                return ApplyResult("applied", refresh=(token,))
            return self._changed(ev, held, at, trace)
        return IGNORED

    def _opened(
        self, ev: EventEnvelope, token: int, at: Pos, trace: dict[str, str] | None
    ) -> ApplyResult:
        a = ev.args
        self.upsert(
            BookPosition(
                token_id=token,
                market_id=str(a.get("marketId") or ev.market_id),
                owner=str(a["owner"]).lower(),
                is_long=bool(a["isLong"]),
                collateral=int(a["collateral"]),
                size=int(a["size"]),
                notional=int(a["notional"]),
                entry_funding_index=int(a["entryFundingIndex"]),
                updated=at,
                trace=trace,
            )
        )
        return APPLIED

    def _changed(
        self, ev: EventEnvelope, held: BookPosition, at: Pos, trace: dict[str, str] | None
    ) -> ApplyResult:
        """MarginChanged or PositionReduced on a position the book holds."""
        a = ev.args
        if ev.name == EventName.MarginChanged:
            held.collateral = int(a["newCollateral"])
        else:
            held.size = int(a["size"])
            held.notional = int(a["notional"])
            held.collateral = int(a["collateral"])
        held.entry_funding_index = int(a["entryFundingIndex"])
        held.updated = at
        if trace is not None:
            held.trace = trace
        held.version = self.version + 1
        self.version += 1
        return APPLIED

    def _funding_updated(self, market: BookMarket, ev: EventEnvelope) -> ApplyResult:
        # the index moves every second: the health loop reads it from the chain each block;
        # a new rate only means cached triggers should be recomputed
        market._touch()
        self.version += 1
        return APPLIED

    def _market_added(self, market: BookMarket, ev: EventEnvelope) -> ApplyResult:
        if ev.args.get("pair"):
            market.pair = str(ev.args["pair"])
        return ApplyResult("applied", markets=(market.market_id,))

    def _market_paused(self, market: BookMarket, ev: EventEnvelope) -> ApplyResult:
        paused = bool(ev.args.get("paused"))
        market.paused = (not paused) if ev.reverted else paused
        return APPLIED

    def _risk_params_updated(self, market: BookMarket, ev: EventEnvelope) -> ApplyResult:
        # a governance change of the maintenance ratio: in force from this block, so the
        # mirror uses it at once; a reverted one (a reorg) is read back from the chain
        if ev.reverted:
            return ApplyResult("applied", markets=(market.market_id,))
        market.set_mmr(int(ev.args["maintenanceMarginRatio"]))
        self.version += 1
        return APPLIED
