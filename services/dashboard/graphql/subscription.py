"""The Subscription root: new events, fanned out from the dashboard's one Kafka consumer.

Each subscription is a mailbox of the same `Hub` the /ws feed uses (services.dashboard.hub):
no Kafka consumer per client, and a slow client only loses its own oldest messages (counted in
`missedBefore`). History is in the queries; a subscription only sees what arrives after it
starts.
"""

from __future__ import annotations

import json
from collections.abc import AsyncGenerator
from typing import Any

import strawberry
from graphql import GraphQLError

from services.dashboard import params
from services.dashboard.graphql.context import OperationContext, bad_input, from_param_error
from services.dashboard.graphql.scalars import BigInt
from services.dashboard.graphql.types import LiveEvent
from shared.events.schema import EVENT_NAMES


def event_matches(
    event: dict[str, Any],
    names: frozenset[str] | None,
    market_id: str | None,
    token_id: int | None,
) -> bool:
    """Does a /ws event (formatting.format_event) pass the subscription's filters (pure)."""
    if names is not None and event.get("name") not in names:
        return False
    if market_id is not None and (event.get("market_id") or "").lower() != market_id:
        return False
    return token_id is None or event.get("token_id") == token_id


def _names(names: list[str] | None) -> frozenset[str] | None:
    if names is None:
        return None
    unknown = sorted(set(names) - EVENT_NAMES)
    if unknown:
        raise bad_input(
            "names",
            f"unknown event name(s) {', '.join(unknown)}; expected some of "
            f"{', '.join(sorted(EVENT_NAMES))}",
        )
    return frozenset(names)


@strawberry.type
class Subscription:
    @strawberry.subscription(
        description=(
            "Events as the indexer publishes them (including reorgs' compensating events, "
            "`reverted: true`), optionally only some names, one market or one position."
        )
    )
    async def events(
        self,
        info: strawberry.Info,
        names: list[str] | None = None,
        market: str | None = None,
        token_id: BigInt | None = None,
    ) -> AsyncGenerator[LiveEvent, None]:
        wanted = _names(names)
        try:
            ref = params.parse_market(market)
        except params.ParamError as exc:
            raise from_param_error(exc) from None
        ctx: OperationContext = info.context
        hub = ctx.service.hub
        sub = hub.subscribe()
        if sub is None:
            raise GraphQLError(
                f"too many live clients (DASHBOARD_MAX_CLIENTS={hub.max_clients}); try later",
                extensions={"code": "TOO_MANY_SUBSCRIBERS"},
            )
        market_id = ref.market_id if ref else None
        missed = 0
        try:
            while True:
                text, dropped = await sub.take()
                missed += dropped
                if text is None:  # the dashboard is shutting down
                    return
                message = json.loads(text)
                if message.get("type") != "event":
                    continue
                event = message["event"]
                if event_matches(event, wanted, market_id, token_id):
                    yield {**event, "missed_before": missed}  # type: ignore[misc]
                    missed = 0
        finally:
            hub.unsubscribe(sub)
