"""FundingRateUpdated events from Kafka: how the updater learns of updates, its own and anyone
else's, without polling the contract; and FundingParamsUpdated (a governance change of the
interval or the rate cap), which makes it re-read the market's configuration at once.

Every replica must see every update, so it reads every partition of the topic from its end in no
consumer group (shared.events.tail). The chain is read at start and is the truth; an event only
wakes the market's scheduler early. Redelivered events (at-least-once) are dropped
(shared.events.dedup). Messages that do not decode are logged and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from shared.events.dedup import RecentKeys
from shared.events.names import EventName
from shared.events.schema import EventEnvelope, MalformedEventError, decode_event
from shared.events.tail import ConsumerFactory, TopicTail
from shared.telemetry import meter

log = logging.getLogger(__name__)
_meter = meter("perpex.funding")
_events_counter = _meter.create_counter(
    "perpex_funding_events_received", description="FundingRateUpdated events taken from Kafka"
)
_decode_errors = _meter.create_counter(
    "perpex_funding_event_decode_errors", description="Kafka messages that did not decode"
)


@dataclass(frozen=True)
class FundingEvent:
    event_id: str
    market_id: str  # 0x-hex, lower case
    rate_wad: int
    cumulative_index: int
    mark_twap: int
    index_twap: int
    timestamp: int
    tx_hash: str
    block_number: int
    reverted: bool = False  # removed by a reorg: the update no longer stands
    block_hash: str = ""  # a transaction re-mined after a reorg keeps its event id, not this


@dataclass(frozen=True)
class FundingParamsEvent:
    """A market's new funding interval and rate cap (an executed governance change)."""

    event_id: str
    market_id: str  # 0x-hex, lower case
    interval: int  # seconds
    max_funding_rate: int  # WAD
    tx_hash: str
    block_number: int
    reverted: bool = False
    block_hash: str = ""


def parse_params_event(env: EventEnvelope) -> FundingParamsEvent:
    mid = env.market_id or env.args.get("marketId")
    if not isinstance(mid, str):
        raise MalformedEventError(f"{EventName.FundingParamsUpdated} without a market id")
    try:
        return FundingParamsEvent(
            event_id=env.event_id,
            market_id="0x" + mid.removeprefix("0x").lower(),
            interval=env.int_arg("fundingInterval"),
            max_funding_rate=env.int_arg("maxFundingRate"),
            tx_hash=env.tx_hash.lower(),
            block_number=env.block_number,
            reverted=env.reverted,
            block_hash=env.block_hash.lower(),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedEventError(f"{EventName.FundingParamsUpdated} args: {exc!r}") from None


def parse_funding_event(raw: bytes | str) -> FundingEvent | FundingParamsEvent | None:
    """The FundingRateUpdated (or FundingParamsUpdated) carried by one Kafka message; None for
    any other event. Raises MalformedEventError when the message is not a valid envelope or
    lacks a field."""
    env = decode_event(raw)
    if env.name == EventName.FundingParamsUpdated:
        return parse_params_event(env)
    if env.name != EventName.FundingRateUpdated:
        return None
    mid = env.market_id or env.args.get("marketId")
    if not isinstance(mid, str):
        raise MalformedEventError("FundingRateUpdated without a market id")
    try:
        return FundingEvent(
            event_id=env.event_id,
            market_id="0x" + mid.removeprefix("0x").lower(),
            rate_wad=env.int_arg("fundingRate"),
            cumulative_index=env.int_arg("cumulativeFundingLong"),  # the longs' index
            mark_twap=env.int_arg("markTwap"),
            index_twap=env.int_arg("indexTwap"),
            timestamp=int(env.args.get("timestamp", env.block_timestamp)),
            tx_hash=env.tx_hash.lower(),
            block_number=env.block_number,
            reverted=env.reverted,
            block_hash=env.block_hash.lower(),
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedEventError(f"FundingRateUpdated args: {exc!r}") from None


class FundingEventListener:
    def __init__(
        self,
        bootstrap_servers: str,
        topic: str,
        market_ids: set[str],
        on_event: Callable[[FundingEvent], None],
        consumer_factory: ConsumerFactory | None = None,
        max_backoff: float = 30.0,
        on_params: Callable[[FundingParamsEvent], None] | None = None,
    ):
        self.topic = topic
        self.market_ids = {m.lower() for m in market_ids}
        self.on_event = on_event
        self.on_params = on_params
        self.tail = TopicTail(
            bootstrap_servers,
            topic,
            lambda record: self.handle(record.value),
            consumer_factory=consumer_factory,
            max_backoff=max_backoff,
            logger=log,
        )
        self._dedup = RecentKeys()
        self.received = 0
        self.decode_errors = 0

    def handle(self, raw: bytes | str | None) -> FundingEvent | FundingParamsEvent | None:
        """Decode one message and hand a new FundingRateUpdated (FundingParamsUpdated) of one of
        our markets on."""
        if raw is None:
            return None
        try:
            event = parse_funding_event(raw)
        except MalformedEventError as exc:
            self.decode_errors += 1
            _decode_errors.add(1)
            log.warning("undecodable message on %s: %s", self.topic, exc)
            return None
        if event is None or event.market_id not in self.market_ids:
            return None
        if not self._dedup.first_time(event):
            return None
        self.received += 1
        _events_counter.add(1, {"market_id": event.market_id})
        if isinstance(event, FundingParamsEvent):
            if self.on_params is not None:
                self.on_params(event)
        else:
            self.on_event(event)
        return event

    @property
    def connected(self) -> bool:
        return self.tail.connected

    async def run(self, stop: asyncio.Event) -> None:
        await self.tail.run(stop)

    def status(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "connected": self.connected,
            "events": self.received,
            "decode_errors": self.decode_errors,
            "last_error": self.tail.last_error,
        }
