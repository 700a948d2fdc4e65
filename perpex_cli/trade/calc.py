"""The trading CLI's math, in WAD integers as the contracts compute it (pure, no I/O).

Margin and health come from `services.keeper.margin` (the PositionManager's formulas, with
Solidity's truncating division); this module adds what a trader sees before sending:

- amounts typed by people (``"1000.5"``, ``"5x"``, ``"1%"``) to WAD and back;
- the price bound sent with a trade (``--slippage``) and the fee bound (``maxFee``);
- the liquidation price: the index price at which `health()` turns liquidatable, found exactly
  in integers (the keeper's float `trigger_price` gives the first guess);
- the open-time checks the contract makes (`_checkHealthy`: at the index, and at the mark when
  mark and index diverge by more than `maxSpread`) and the most margin `removeMargin` allows
  (`_checkInitialMargin`);
- zero-sum funding per second for one position at a given book: the paying side pays
  ``fundingPerSecond x min(longSize, shortSize)`` in all, pro rata to size, the other side
  receives it, pro rata (payments rounded up, receipts toward zero, as the contract does).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from services.keeper.margin import (
    WAD,
    entry_price,
    health,
    pending_funding,
    trigger_price,
    unrealized_pnl,
)

__all__ = [
    "EIGHT_HOURS",
    "WAD",
    "ClosePreview",
    "ReducePreview",
    "book_with",
    "close_settlement",
    "diverged",
    "entry_price",
    "fmt_wad",
    "funding_over",
    "funding_per_second",
    "health",
    "liquidation_price",
    "margin_ratio",
    "max_fee",
    "max_removable_margin",
    "open_notional",
    "parse_amount",
    "parse_leverage",
    "parse_percent",
    "pending_funding",
    "price_limit",
    "reduce_settlement",
    "unrealized_pnl",
    "would_be_liquidatable",
]

EIGHT_HOURS = 8 * 3600
_DECIMALS = 18


# ---------------------------------------------------------------- parsing and formatting


def _decimal(text: str, what: str) -> Decimal:
    cleaned = text.strip().replace("_", "").replace(",", "")
    try:
        value = Decimal(cleaned)
    except InvalidOperation:
        raise ValueError(f"{what} must be a number, got {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"{what} must be a finite number, got {text!r}")
    return value


def _to_wad(value: Decimal, what: str, text: str) -> int:
    scaled = value.scaleb(_DECIMALS)
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{what} has more than {_DECIMALS} decimals: {text!r}")
    return int(scaled)


def parse_amount(text: str, what: str = "amount") -> int:
    """A positive decimal amount (``"1000"``, ``"0.5"``, ``"10_000"``) -> WAD."""
    value = _decimal(text, what)
    if value <= 0:
        raise ValueError(f"{what} must be greater than 0, got {text!r}")
    return _to_wad(value, what, text)


def parse_leverage(text: str) -> int:
    """``"5"``, ``"5x"``, ``"2.5x"`` -> WAD (5x = 5e18). At least 1x."""
    raw = text.strip().lower().removesuffix("x")
    value = _decimal(raw, "leverage")
    if value < 1:
        raise ValueError(f"leverage must be at least 1x, got {text!r}")
    return _to_wad(value, "leverage", text)


def parse_percent(text: str, what: str = "percentage", *, maximum: int = 100) -> int:
    """``"1"``, ``"0.5%"`` (percent) -> a WAD fraction (1% = 0.01e18), in [0, maximum]."""
    value = _decimal(text.strip().removesuffix("%"), what)
    if value < 0 or value > maximum:
        raise ValueError(f"{what} must be between 0 and {maximum}%, got {text!r}")
    return _to_wad(value / 100, what, text)


def fmt_wad(value: int, places: int | None = None) -> str:
    """A WAD integer as a decimal string: exact (trailing zeros trimmed) when `places` is None,
    else rounded half-even to `places` decimals."""
    d = Decimal(value).scaleb(-_DECIMALS)
    if places is None:
        text = format(d.normalize(), "f")
        return text if text != "-0" else "0"
    q = d.quantize(Decimal(1).scaleb(-places))
    return format(q, f",.{places}f")


# ---------------------------------------------------------------- trade bounds


def open_notional(collateral: int, leverage: int) -> int:
    """notional = collateral * leverage / 1e18 (PositionManager._open)."""
    return collateral * leverage // WAD


def price_limit(buying: bool, price: int, slippage: int) -> int:
    """The price bound for a trade expected at `price` with `slippage` (WAD fraction).

    Buying (open long, close short) may pay at most price x (1 + slippage), rounded down;
    selling (open short, close long) must get at least price x (1 - slippage), rounded up. The
    contract checks ``entry <= limit`` when buying and ``entry >= limit`` when selling; a limit
    of 0 would mean "none", so a selling limit is at least 1 wei."""
    if buying:
        return price * (WAD + slippage) // WAD
    return max(1, -(-price * (WAD - slippage) // WAD)) if slippage < WAD else 1


def max_fee(fee: int, headroom: int) -> int:
    """The `maxFee` sent with a trade: the quoted fee plus `headroom` (WAD fraction), rounded up,
    and at least 1 wei more than the quote (the fee itself is rounded up on-chain)."""
    return fee + max(1, -(-fee * headroom // WAD))


# ---------------------------------------------------------------- health


def diverged(mark: int, index: int, spread: int) -> bool:
    """PositionManagerBase._diverged: |mark - index| / index > maxSpread."""
    return abs(mark - index) * WAD > index * spread


def would_be_liquidatable(
    is_long: bool,
    collateral: int,
    size: int,
    notional: int,
    index: int,
    mark: int,
    mmr: int,
    max_spread: int,
) -> tuple[int, int] | None:
    """The contract's `_checkHealthy` for a new (or reduced) position without pending funding:
    (margin, maintenance) at the price that fails (index, or mark when the two diverge past
    maxSpread), or None when it passes."""
    for price in (index, mark) if diverged(mark, index, max_spread) else (index,):
        h = health(is_long, collateral, size, notional, 0, 0, price, mmr)
        if h.liquidatable:
            return h.margin, h.maintenance
    return None


def liquidation_price(
    is_long: bool,
    collateral: int,
    size: int,
    notional: int,
    entry_funding_index: int = 0,
    cumulative: int = 0,
    mmr: int = WAD * 25 // 1000,
) -> int | None:
    """The index price (WAD) at which the position becomes liquidatable, from the contract's
    health formula with its pending funding as it stands:

    - long: the highest price at which it is liquidatable (liquidated at or below it);
    - short: the lowest such price (liquidated at or above it).

    None when no positive price makes it liquidatable (a 1x long without funding owed). Exact:
    integer `health()` decides, the float `trigger_price` only seeds the search."""
    if size <= 0:
        return None

    def liq(p: int) -> bool:
        return (
            p > 0
            and health(
                is_long, collateral, size, notional, entry_funding_index, cumulative, p, mmr
            ).liquidatable
        )

    guess = trigger_price(is_long, collateral, size, notional, entry_funding_index, cumulative, mmr)
    if is_long:
        if not math.isfinite(guess):
            return None
        # find lo (liquidatable) < hi (not): the answer is the largest liquidatable price
        seed = max(1, int(guess))
        step = max(1, seed // 10**9)
        hi = seed + step
        while liq(hi):
            hi += step
            step *= 2
        lo = max(1, seed - step)
        while not liq(lo):
            if lo == 1:
                return None
            hi = lo
            lo = max(1, lo - step)
            step *= 2
        while hi - lo > 1:
            mid = (lo + hi) // 2
            if liq(mid):
                lo = mid
            else:
                hi = mid
        return lo
    if not math.isfinite(guess) or guess <= 0:
        seed = 1
    else:
        seed = max(1, int(guess))
    # short: the smallest liquidatable price; lo not liquidatable < hi liquidatable
    step = max(1, seed // 10**9)
    lo = max(1, seed - step)
    if liq(lo):
        while lo > 1 and liq(lo):
            lo = max(1, lo - step)
            step *= 2
        if liq(lo):
            return 1
    hi = lo + step
    while not liq(hi):
        lo = hi
        hi += step
        step *= 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if liq(mid):
            hi = mid
        else:
            lo = mid
    return hi


def max_removable_margin(
    is_long: bool,
    collateral: int,
    size: int,
    notional: int,
    funding_owed: int,
    index: int,
    mark: int,
    max_leverage: int,
    max_spread: int,
) -> int:
    """The most `removeMargin` allows now: after its pending funding is settled, the position
    must keep ``collateral + min(unrealized PnL at price, 0) >= size * price / maxLeverage`` at
    the index, and at the mark too when the two diverge past maxSpread
    (PositionManager._checkInitialMargin)."""
    c = collateral - funding_owed
    if c <= 0 or index <= 0:
        return 0
    best = c
    for price in (index, mark) if diverged(mark, index, max_spread) else (index,):
        pnl = unrealized_pnl(is_long, size, notional, price)
        required = size * price // WAD * WAD // max_leverage
        best = min(best, c + min(pnl, 0) - required)
    return max(0, best)


# ---------------------------------------------------------------- settlement previews


@dataclass(frozen=True)
class ClosePreview:
    equity: int  # collateral + realized PnL - funding (negative: the close reverts)
    fee: int  # the fee charged (at most the equity)
    payout: int  # back to free collateral


def close_settlement(collateral: int, realized_pnl: int, funding: int, fee: int) -> ClosePreview:
    """PositionManager._settleClose: equity = collateral + pnl - funding; the fee is taken from
    it (never more than it); payout = equity - fee."""
    equity = collateral + realized_pnl - funding
    if equity < 0:
        return ClosePreview(equity, fee, 0)
    charged = min(fee, equity)
    return ClosePreview(equity, charged, equity - charged)


@dataclass(frozen=True)
class ReducePreview:
    part_notional: int  # entry notional of the part closed
    part_collateral: int  # its share of the collateral (after funding)
    realized_pnl: int
    fee: int
    payout: int
    rest_size: int
    rest_notional: int
    rest_collateral: int
    negative_equity: int | None  # set when the contract would revert NegativeEquity


def reduce_settlement(
    is_long: bool,
    collateral: int,
    size: int,
    notional: int,
    funding: int,
    close_size: int,
    exit_quote: int,
    fee: int,
) -> ReducePreview:
    """PositionManager._settleReduce/_rest: the whole position's funding settles into its
    collateral; the part closed takes ``collateral * closeSize / size`` plus its PnL, less the
    fee; the rest keeps the rest."""
    part = notional * close_size // size
    pnl = exit_quote - part if is_long else part - exit_quote
    c = collateral - funding
    negative: int | None = None
    if c < 0:
        negative = c
        c = 0
    part_collateral = c * close_size // size
    part_equity = part_collateral + pnl
    if part_equity < 0 and negative is None:
        negative = part_equity
    charged = min(fee, max(part_equity, 0))
    return ReducePreview(
        part_notional=part,
        part_collateral=part_collateral,
        realized_pnl=pnl,
        fee=charged,
        payout=max(part_equity, 0) - charged,
        rest_size=size - close_size,
        rest_notional=notional - part,
        rest_collateral=c - part_collateral,
        negative_equity=negative,
    )


# ---------------------------------------------------------------- funding


def funding_per_second(
    is_long: bool, size: int, funding_per_second_wad: int, long_size: int, short_size: int
) -> int:
    """What a position of `size` on its side pays per second (positive) or receives (negative)
    at the market's `fundingPerSecond` with `long_size` / `short_size` open (the position
    included): the paying side (longs when the speed is positive) pays speed x min(L, S) in all,
    pro rata; the other side receives it, pro rata. One side empty: nothing moves."""
    if funding_per_second_wad == 0 or long_size <= 0 or short_size <= 0 or size <= 0:
        return 0
    matched = min(long_size, short_size)
    side = long_size if is_long else short_size
    speed = funding_per_second_wad if is_long else -funding_per_second_wad
    owed = abs(speed) * matched * size
    denom = side * WAD
    if speed > 0:  # pays: rounded up, as payers' indexes are
        return -(-owed // denom)
    return -(owed // denom)


def funding_over(per_second: int, seconds: int = EIGHT_HOURS) -> int:
    return per_second * seconds


def book_with(is_long: bool, size: int, long_size: int, short_size: int) -> tuple[int, int]:
    """The book's (long size, short size) once a position of `size` is added (negative `size`:
    removed)."""
    return (long_size + size, short_size) if is_long else (long_size, short_size + size)


def margin_ratio(margin: int, maintenance: int) -> float | None:
    """margin / maintenance (under 1: liquidatable); None without a maintenance figure."""
    if maintenance <= 0:
        return None
    return margin / maintenance
