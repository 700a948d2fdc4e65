"""Pure query-parameter validation for the dashboard API.

Each endpoint accepts a fixed set of parameters; anything else, a repeated parameter or a bad
value raises `ParamError` naming the parameter, which the API answers with 400. An empty value
(`?status=`) means "not given", so HTML forms can submit blank filters.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from shared.chain.deployment import market_id_hex

STATUSES = ("open", "closed", "liquidated")
POSITION_SORTS = ("opened", "closed", "notional", "size", "collateral", "token_id")
ORDERS = ("asc", "desc")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500
MAX_FUNDING_LIMIT = 5000
MAX_OFFSET = 10_000_000
MAX_TIMESTAMP = 2**63 - 1
MAX_BLOCK = 2**63 - 1

_ADDRESS_RE = re.compile(r"^0x[0-9a-fA-F]{40}$")
_MARKET_ID_RE = re.compile(r"^0x[0-9a-fA-F]{64}$")
_PAIR_RE = re.compile(r"^[A-Za-z0-9._\-]{1,32}/[A-Za-z0-9._\-]{1,32}$")


class ParamError(ValueError):
    """A bad query parameter; `param` names it, `message` says what is wrong."""

    def __init__(self, param: str, message: str):
        self.param = param
        self.message = message
        super().__init__(f"{param}: {message}")

    def as_json(self) -> dict[str, str]:
        return {"error": "bad_parameter", "param": self.param, "message": self.message}


@dataclass(frozen=True)
class Page:
    limit: int = DEFAULT_LIMIT
    offset: int = 0


@dataclass(frozen=True)
class MarketRef:
    """A market given as a pair ("ETH/USDT") or as its id; id = keccak256(pair)."""

    market_id: str  # 0x + 64 lower-case hex
    label: str  # what the caller wrote


@dataclass(frozen=True)
class PositionFilter:
    statuses: tuple[str, ...] | None = None  # None: every status
    market: MarketRef | None = None
    owner: str | None = None
    sort: str = "opened"
    order: str = "desc"
    page: Page = Page()
    # inclusive block ranges; a closed-block bound leaves out positions still open
    opened_from: int | None = None
    opened_to: int | None = None
    closed_from: int | None = None
    closed_to: int | None = None


@dataclass(frozen=True)
class LiquidationFilter:
    market: MarketRef | None = None
    owner: str | None = None
    liquidator: str | None = None
    since: int | None = None
    until: int | None = None
    page: Page = Page()


@dataclass(frozen=True)
class FundingFilter:
    market: MarketRef | None = None
    since: int | None = None
    until: int | None = None
    order: str = "desc"
    page: Page = Page(limit=500)


def single_values(items: Iterable[tuple[str, str]], allowed: Iterable[str]) -> dict[str, str]:
    """Query items -> {name: value}, rejecting unknown and repeated names. Blank values drop."""
    allowed_set = set(allowed)
    seen: set[str] = set()
    out: dict[str, str] = {}
    for name, value in items:
        if name not in allowed_set:
            raise ParamError(
                name, f"unknown parameter (expected one of: {', '.join(sorted(allowed_set))})"
            )
        if name in seen:
            raise ParamError(name, "given more than once")
        seen.add(name)
        value = value.strip()
        if value:
            out[name] = value
    return out


def parse_int(name: str, value: str | None, default: int, low: int, high: int) -> int:
    if value is None:
        return default
    if not re.fullmatch(r"[0-9]+", value):
        raise ParamError(name, f"must be an integer between {low} and {high}, got {value!r}")
    number = int(value) if len(value.lstrip("0")) <= len(str(high)) else high + 1
    if not low <= number <= high:
        raise ParamError(name, f"must be an integer between {low} and {high}, got {value}")
    return number


def parse_page(values: dict[str, str], default_limit: int, max_limit: int) -> Page:
    return Page(
        limit=parse_int("limit", values.get("limit"), default_limit, 1, max_limit),
        offset=parse_int("offset", values.get("offset"), 0, 0, MAX_OFFSET),
    )


def parse_choice(name: str, value: str | None, choices: tuple[str, ...], default: str) -> str:
    if value is None:
        return default
    lowered = value.lower()
    if lowered not in choices:
        raise ParamError(name, f"must be one of {', '.join(choices)}, got {value!r}")
    return lowered


def parse_statuses(value: str | None) -> tuple[str, ...] | None:
    """ "open", "open,closed" or "all" (= no filter)."""
    if value is None or value.lower() == "all":
        return None
    wanted: list[str] = []
    for part in value.split(","):
        status = part.strip().lower()
        if status not in STATUSES:
            raise ParamError(
                "status", f"must be 'all' or a comma-separated list of {', '.join(STATUSES)}"
            )
        if status not in wanted:
            wanted.append(status)
    return tuple(wanted)


def parse_address(name: str, value: str | None) -> str | None:
    if value is None:
        return None
    if not _ADDRESS_RE.match(value):
        raise ParamError(name, "must be a 0x-prefixed 20-byte hex address")
    return value.lower()


def parse_market(value: str | None, name: str = "market") -> MarketRef | None:
    if value is None:
        return None
    if _MARKET_ID_RE.match(value):
        return MarketRef(value.lower(), value)
    if _PAIR_RE.match(value):
        return MarketRef(market_id_hex(value), value)
    raise ParamError(name, "must be a pair such as ETH/USDT or a 0x-prefixed 32-byte market id")


def parse_timestamp(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    return parse_int(name, value, 0, 0, MAX_TIMESTAMP)


def _check_range(
    since: int | None, until: int | None, low: str = "since", high: str = "until"
) -> None:
    if since is not None and until is not None and since > until:
        raise ParamError(low, f"must not be later than {high}")


def parse_block(name: str, value: str | None) -> int | None:
    if value is None:
        return None
    return parse_int(name, value, 0, 0, MAX_BLOCK)


BLOCK_RANGE_PARAMS = ("opened_from", "opened_to", "closed_from", "closed_to")
POSITION_PARAMS = ("status", "market", "owner", "sort", "order", "limit", "offset")
LIQUIDATION_PARAMS = ("market", "owner", "liquidator", "since", "until", "limit", "offset")
FUNDING_PARAMS = ("market", "since", "until", "order", "limit", "offset")


def parse_position_filter(items: Iterable[tuple[str, str]]) -> PositionFilter:
    v = single_values(items, POSITION_PARAMS + BLOCK_RANGE_PARAMS)
    blocks = {name: parse_block(name, v.get(name)) for name in BLOCK_RANGE_PARAMS}
    _check_range(blocks["opened_from"], blocks["opened_to"], "opened_from", "opened_to")
    _check_range(blocks["closed_from"], blocks["closed_to"], "closed_from", "closed_to")
    return PositionFilter(
        statuses=parse_statuses(v.get("status")),
        market=parse_market(v.get("market")),
        owner=parse_address("owner", v.get("owner")),
        sort=parse_choice("sort", v.get("sort"), POSITION_SORTS, "opened"),
        order=parse_choice("order", v.get("order"), ORDERS, "desc"),
        page=parse_page(v, DEFAULT_LIMIT, MAX_LIMIT),
        opened_from=blocks["opened_from"],
        opened_to=blocks["opened_to"],
        closed_from=blocks["closed_from"],
        closed_to=blocks["closed_to"],
    )


def parse_liquidation_filter(items: Iterable[tuple[str, str]]) -> LiquidationFilter:
    v = single_values(items, LIQUIDATION_PARAMS)
    since = parse_timestamp("since", v.get("since"))
    until = parse_timestamp("until", v.get("until"))
    _check_range(since, until)
    return LiquidationFilter(
        market=parse_market(v.get("market")),
        owner=parse_address("owner", v.get("owner")),
        liquidator=parse_address("liquidator", v.get("liquidator")),
        since=since,
        until=until,
        page=parse_page(v, DEFAULT_LIMIT, MAX_LIMIT),
    )


def parse_funding_filter(
    items: Iterable[tuple[str, str]], market: str | None = None
) -> FundingFilter:
    """`market` comes from the path (/api/markets/{market}/funding) when not a query param."""
    v = single_values(items, FUNDING_PARAMS if market is None else FUNDING_PARAMS[1:])
    since = parse_timestamp("since", v.get("since"))
    until = parse_timestamp("until", v.get("until"))
    _check_range(since, until)
    return FundingFilter(
        market=parse_market(market if market is not None else v.get("market")),
        since=since,
        until=until,
        order=parse_choice("order", v.get("order"), ORDERS, "desc"),
        page=parse_page(v, 500, MAX_FUNDING_LIMIT),
    )


def parse_token_id(value: str) -> int:
    return parse_int("token_id", value, 0, 0, 2**256 - 1)
