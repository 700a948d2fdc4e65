"""Readable parameter changes <-> the calls a governance proposal executes (pure).

`parse_change("set ETH/USDT maxLeverage 15")` understands:

    set <PAIR> <param> <value>     a market parameter (table PARAMS below)
    pause <PAIR> / unpause <PAIR>
    set fundingReward <value>      what a funding update pays its caller (vUSDT)
    set maxUtilization <value>     the vault's utilization limit
    set guardian <address>         who may pause markets

Values: `15` (a plain number: WAD, so leverage 15 = 15e18 and amounts in vUSDT), `2.5%` or
`0.025` for ratios, `8h` / `30m` / `3600` for durations (seconds). `plan_call` turns a parsed
change into (contract, function, args); grouped setters (setRiskParams takes three values) keep
the other values at what the chain has now (`MarketParams`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from decimal import Decimal, InvalidOperation
from typing import Any

WAD = 10**18


class ChangeError(ValueError):
    """A change text that cannot be understood; the message says why."""


@dataclass(frozen=True)
class Param:
    contract: str  # "pm" (PositionManager), "vamm" (the market's VirtualAMM), "vault"
    function: str
    position: int  # index of this value among the setter's value arguments
    kind: str  # "wad" (amount or leverage), "ratio", "seconds"


# market parameters: name -> where it is set
PARAMS: dict[str, Param] = {
    "maxLeverage": Param("pm", "setRiskParams", 0, "wad"),
    "maintenanceMarginRatio": Param("pm", "setRiskParams", 1, "ratio"),
    "liquidationFeeRatio": Param("pm", "setRiskParams", 2, "ratio"),
    "minNotional": Param("pm", "setSafetyParams", 0, "wad"),
    "liquidationRewardShare": Param("pm", "setSafetyParams", 1, "ratio"),
    "maxSpread": Param("pm", "setSafetyParams", 2, "ratio"),
    "fundingInterval": Param("pm", "setFundingParams", 0, "seconds"),
    "maxFundingRate": Param("pm", "setFundingParams", 1, "ratio"),
    "feeRatio": Param("vamm", "setParams", 0, "ratio"),
    "maxPriceImpact": Param("vamm", "setParams", 1, "ratio"),
    "maxPriceMovePerBlock": Param("vamm", "setBlockPriceMoveLimit", 0, "ratio"),
}
ALIASES = {
    "mmr": "maintenanceMarginRatio",
    "liquidationPenalty": "liquidationFeeRatio",
    "fee": "feeRatio",
    "leverage": "maxLeverage",
}
# each setter's value arguments, in order (after the market id for the PositionManager's)
SETTERS: dict[str, tuple[str, ...]] = {
    "setRiskParams": ("maxLeverage", "maintenanceMarginRatio", "liquidationFeeRatio"),
    "setSafetyParams": ("minNotional", "liquidationRewardShare", "maxSpread"),
    "setFundingParams": ("fundingInterval", "maxFundingRate"),
    "setParams": ("feeRatio", "maxPriceImpact"),
    "setBlockPriceMoveLimit": ("maxPriceMovePerBlock",),
}
GLOBAL = {
    "fundingReward": Param("pm", "setFundingReward", 0, "wad"),
    "maxUtilization": Param("vault", "setMaxUtilization", 0, "ratio"),
    "guardian": Param("pm", "setGuardian", 0, "address"),
}
_PAIR = re.compile(r"^[A-Z0-9]{1,16}/[A-Z0-9]{1,16}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")
_DURATION = re.compile(r"^(\d+)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


@dataclass(frozen=True)
class Change:
    """A parsed change: a market parameter (`pair` set), a pause, or a global setting."""

    action: str  # "set" | "pause" | "unpause"
    param: str | None  # canonical name (PARAMS / GLOBAL), None for pause/unpause
    pair: str | None
    value: int | str | None  # WAD / seconds int, or an address
    text: str

    @property
    def description(self) -> str:
        return self.text


@dataclass(frozen=True)
class MarketParams:
    """A market's current values, as the chain has them (WAD ints, seconds)."""

    maxLeverage: int
    maintenanceMarginRatio: int
    liquidationFeeRatio: int
    minNotional: int
    liquidationRewardShare: int
    maxSpread: int
    fundingInterval: int
    maxFundingRate: int
    feeRatio: int
    maxPriceImpact: int
    maxPriceMovePerBlock: int

    def value(self, name: str) -> int:
        return int(getattr(self, name))


@dataclass(frozen=True)
class PlannedCall:
    contract: str  # "pm", "vamm", "vault"
    pair: str | None  # the market whose vAMM / id the call concerns
    function: str
    args: tuple[Any, ...]  # the market id (bytes32) first for the PositionManager's market setters


def parse_value(kind: str, raw: str) -> int | str:
    raw = raw.strip().replace("_", "")
    if kind == "address":
        if not _ADDRESS.match(raw):
            raise ChangeError(f"{raw!r} is not an address (0x + 40 hex digits)")
        return raw
    if kind == "seconds":
        m = _DURATION.match(raw)
        if not m:
            raise ChangeError(f"{raw!r} is not a duration (e.g. 8h, 30m, 3600)")
        return int(m.group(1)) * _UNITS[m.group(2)]
    pct = raw.endswith("%")
    try:
        number = Decimal(raw[:-1] if pct else raw)
    except InvalidOperation:
        raise ChangeError(f"{raw!r} is not a number") from None
    if number < 0:
        raise ChangeError(f"{raw!r} is negative")
    if pct:
        number /= 100
    scaled = number * WAD
    if scaled != scaled.to_integral_value():
        raise ChangeError(f"{raw!r} has more than 18 decimals")
    if kind == "ratio" and number > 1:
        raise ChangeError(f"{raw!r} is a ratio above 100%")
    return int(scaled)


def parse_change(text: str) -> Change:
    words = text.split()
    if not words:
        raise ChangeError("empty change")
    action = words[0].lower()
    if action in ("pause", "unpause"):
        if len(words) != 2 or not _PAIR.match(words[1]):
            raise ChangeError(f"expected '{action} <PAIR>', e.g. '{action} ETH/USDT'")
        return Change(action, None, words[1], None, text)
    if action != "set":
        raise ChangeError(f"unknown action {words[0]!r} (set, pause, unpause)")
    if len(words) == 3:
        name = words[1]
        if name not in GLOBAL:
            raise ChangeError(
                f"unknown setting {name!r}; global settings: {', '.join(sorted(GLOBAL))}; "
                "market parameters need a pair: set <PAIR> <param> <value>"
            )
        return Change("set", name, None, parse_value(GLOBAL[name].kind, words[2]), text)
    if len(words) != 4:
        raise ChangeError("expected 'set <PAIR> <param> <value>' or 'set <setting> <value>'")
    pair, name, raw = words[1], words[2], words[3]
    if not _PAIR.match(pair):
        raise ChangeError(f"{pair!r} is not a market pair like ETH/USDT")
    name = ALIASES.get(name, name)
    if name not in PARAMS:
        raise ChangeError(f"unknown parameter {words[2]!r}; known: {', '.join(sorted(PARAMS))}")
    return Change("set", name, pair, parse_value(PARAMS[name].kind, raw), text)


def plan_call(change: Change, market_id: bytes | None, current: MarketParams | None) -> PlannedCall:
    """The call that makes `change`: its contract, function and arguments. Market changes need
    the market's id and its current values (the other arguments of a grouped setter)."""
    if change.action in ("pause", "unpause"):
        if market_id is None:
            raise ChangeError("a pause needs the market id")
        return PlannedCall(
            "pm", change.pair, "setMarketPaused", (market_id, change.action == "pause")
        )
    assert change.param is not None
    if change.pair is None:
        g = GLOBAL[change.param]
        return PlannedCall(g.contract, None, g.function, (change.value,))
    if market_id is None or current is None:
        raise ChangeError("a market parameter change needs the market's id and current values")
    param = PARAMS[change.param]
    if not isinstance(change.value, int):
        raise ChangeError(f"{change.param} takes a number")
    updated = replace(current, **{change.param: change.value})
    values = tuple(updated.value(n) for n in SETTERS[param.function])
    args = (market_id, *values) if param.contract == "pm" else values
    return PlannedCall(param.contract, change.pair, param.function, args)
