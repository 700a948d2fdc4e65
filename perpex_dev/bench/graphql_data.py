"""Synthetic indexer rows and client workloads for `perpex bench graphql` (pure, seeded).

Positions look like the indexer's: a few markets, a few thousand owners, roughly one position
per block, 30 % open, 60 % closed, 10 % liquidated. The workload is what an integrator's page
does: pick a view (a filter and an order), read its first page with the total, then follow the
cursor for a few more pages.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from shared.chain.deployment import market_id_hex
from shared.readmodel.tables import PositionRow

WAD = 10**18
PAIRS = {"ETH/USDT": 2000, "BTC/USDT": 40000, "SOL/USDT": 150, "ARB/USDT": 1}
T0 = 1_763_000_000


def owners(count: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    return ["0x" + rng.randbytes(20).hex() for _ in range(count)]


def positions(
    n: int, owner_list: list[str], seed: int = 1, first_token: int = 1
) -> Iterator[PositionRow]:
    rng = random.Random(seed)
    pairs = list(PAIRS)
    for token in range(first_token, first_token + n):
        pair = rng.choice(pairs)
        price = PAIRS[pair] * WAD * rng.randint(900, 1100) // 1000
        collateral = rng.randint(50, 5000) * WAD
        leverage = rng.randint(1, 20) * WAD
        notional = collateral * leverage // WAD
        opened = token + rng.randint(0, 3)
        roll = rng.random()
        status = "open" if roll < 0.3 else ("closed" if roll < 0.9 else "liquidated")
        row = PositionRow(
            token_id=token,
            market_id=market_id_hex(pair),
            market=pair,
            owner=rng.choice(owner_list),
            is_long=rng.random() < 0.5,
            collateral=collateral,
            leverage=leverage,
            size=notional * WAD // price,
            notional=notional,
            entry_price=price,
            entry_funding_index=rng.randint(-(10**15), 10**15),
            open_fee=notional // 1000,
            status=status,
            opened_block=opened,
            opened_timestamp=T0 + opened * 2,
            opened_tx=f"0x{token:064x}",
            updated_block=opened,
        )
        if status != "open":
            closed = opened + rng.randint(1, 5000)
            row.closed_block = closed
            row.closed_timestamp = T0 + closed * 2
            row.closed_tx = f"0x{token + 10**9:064x}"
            row.exit_price = price * rng.randint(800, 1200) // 1000
            row.realized_pnl = rng.randint(-collateral, collateral)
            row.funding_payment = rng.randint(-(10**18), 10**18)
            row.payout = max(0, collateral + row.realized_pnl)
            row.close_fee = notional // 1000
            row.updated_block = closed
        yield row


POSITION_FIELDS = """
  tokenId market owner side status collateral leverage size notional entryPrice
  openedBlock openedAt closedBlock closedAt exitPrice realizedPnl
"""
QUERY = (
    "query Page($filter: PositionFilter, $orderBy: PositionOrderBy!, $direction: Direction!, "
    "$first: Int!, $after: String, $withTotal: Boolean!) {\n"
    "  positions(filter: $filter, orderBy: $orderBy, direction: $direction, first: $first, "
    "after: $after) {\n"
    "    totalCount @include(if: $withTotal)\n"
    "    pageInfo { hasNextPage endCursor }\n"
    f"    nodes {{ {POSITION_FIELDS} }}\n"
    "  }\n}"
)


@dataclass(frozen=True)
class View:
    name: str
    filter: dict[str, Any] | None
    order_by: str = "OPENED"
    direction: str = "DESC"


def random_view(rng: random.Random, owner_list: list[str]) -> View:
    pair = rng.choice(list(PAIRS))
    views = [
        View("latest", None),
        View("market", {"market": pair}),
        View("open", {"status": ["OPEN"]}),
        View("market_open", {"market": pair, "status": ["OPEN"]}),
        View("owner", {"owner": rng.choice(owner_list)}),
        View("liquidated", {"status": ["LIQUIDATED"]}),
        View("biggest", None, "NOTIONAL"),
        View("recently_closed", {"status": ["CLOSED", "LIQUIDATED"]}, "CLOSED"),
        View("oldest_in_market", {"market": pair}, "OPENED", "ASC"),
    ]
    return rng.choice(views)


def variables(view: View, page_size: int, after: str | None) -> dict[str, Any]:
    return {
        "filter": view.filter,
        "orderBy": view.order_by,
        "direction": view.direction,
        "first": page_size,
        "after": after,
        "withTotal": after is None,
    }
