"""FundingRateUpdated events from Kafka: how the updater learns of updates, its own and anyone
else's, without polling the contract; and FundingParamsUpdated (a governance change of the
interval or the rate cap), which makes it re-read the market's configuration at once.

Every replica must see every update, so the consumer joins no group (no offsets committed, no
rebalancing delay): it takes every partition of the topic itself, positioned at the end. The
chain is read at start and is the truth; an event only wakes the market's scheduler early. Redelivered events (at-least-once)
are dropped by event id. Messages that do not decode are logged and counted, never fatal.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka import TopicPartition

from shared.events.names import EventName
from shared.events.schema import EventEnvelope, MalformedEventError, decode_event
from shared.kafka import make_consumer
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


class Dedup:
    """The last `size` events seen, by (event id, block hash, reverted): a reverted copy is a
    new event, and so is the same transaction re-mined in another block after a reorg (same
    chain/tx/log index, so the same event id, but a different block hash)."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._seen: OrderedDict[tuple[str, str, bool], None] = OrderedDict()

    def first_time(self, event: FundingEvent | FundingParamsEvent) -> bool:
        key = (event.event_id, event.block_hash, event.reverted)
        if key in self._seen:
            self._seen.move_to_end(key)
            return False
        self._seen[key] = None
        # a fork that comes back: the event and its revert make each other new again
        self._seen.pop((event.event_id, event.block_hash, not event.reverted), None)
        if len(self._seen) > self.size:
            self._seen.popitem(last=False)
        return True


ConsumerFactory = Callable[[], Any]


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
        self.max_backoff = max_backoff
        self._factory = consumer_factory or (
            lambda: make_consumer(
                bootstrap_servers,
                [],  # no subscription: _assign() takes the partitions itself
                None,
                auto_offset_reset="latest",
                request_timeout_ms=15_000,
            )
        )
        self._dedup = Dedup()
        self.connected = False
        self.received = 0
        self.decode_errors = 0
        self.last_error: str | None = None

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

    async def run(self, stop: asyncio.Event) -> None:
        failures = 0
        while not stop.is_set():
            consumer = self._factory()
            try:
                await consumer.start()
                await self._assign(consumer)
                self.connected = True
                failures = 0
                log.info("listening for %s on %s", EventName.FundingRateUpdated, self.topic)
                while not stop.is_set():
                    batches = await consumer.getmany(timeout_ms=500, max_records=500)
                    for records in batches.values():
                        for record in records:
                            self.handle(record.value)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                delay = min(self.max_backoff, 0.5 * 2 ** min(failures, 8)) * random.uniform(
                    0.8, 1.2
                )
                log.warning("kafka listener: %s; retrying in %.1fs", self.last_error, delay)
                with contextlib.suppress(asyncio.TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)
            finally:
                self.connected = False
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(consumer.stop(), 5)

    async def _assign(self, consumer: Any) -> None:
        """Take every partition of the topic (no group), positioned at its end: from here on,
        every update is seen. Raises while the topic does not exist yet (retried)."""
        await consumer.topics()  # refresh the cluster metadata
        partitions = consumer.partitions_for_topic(self.topic)
        if not partitions:
            raise LookupError(f"topic {self.topic} does not exist (yet)")
        tps = [TopicPartition(self.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_end(*tps)
        for tp in tps:
            await consumer.position(tp)

    def status(self) -> dict[str, Any]:
        return {
            "topic": self.topic,
            "connected": self.connected,
            "events": self.received,
            "decode_errors": self.decode_errors,
            "last_error": self.last_error,
        }
