from __future__ import annotations

import asyncio
import json

from services.dashboard.feed import KafkaFeed
from services.dashboard.hub import Hub
from services.dashboard.params import (
    parse_funding_filter,
    parse_liquidation_filter,
    parse_position_filter,
)
from services.dashboard.repository import funding_sql, liquidations_sql, positions_sql
from shared.events.schema import EventEnvelope, encode_event


async def test_publish_fans_out_to_every_subscriber() -> None:
    hub = Hub(queue_size=4)
    a, b = hub.subscribe(), hub.subscribe()
    assert a is not None and b is not None
    hub.publish("m1")
    assert await a.take() == ("m1", 0)
    assert await b.take() == ("m1", 0)
    assert hub.stats()["clients"] == 2


async def test_slow_subscriber_drops_its_oldest_and_is_told() -> None:
    hub = Hub(queue_size=3)
    slow, fast = hub.subscribe(), hub.subscribe()
    assert slow is not None and fast is not None
    for i in range(5):
        hub.publish(f"m{i}")
        assert await fast.take() == (f"m{i}", 0)  # the fast one keeps up
    assert len(slow) == 3
    assert await slow.take() == ("m2", 2)  # m0, m1 dropped; reported once
    assert await slow.take() == ("m3", 0)
    assert slow.dropped_total == 2


async def test_take_waits_for_publish_and_close_ends_it() -> None:
    hub = Hub(queue_size=2)
    sub = hub.subscribe()
    assert sub is not None
    waiter = asyncio.create_task(sub.take())
    await asyncio.sleep(0.01)
    assert not waiter.done()
    hub.publish("x")
    assert await asyncio.wait_for(waiter, 1) == ("x", 0)
    hub.close()
    assert await asyncio.wait_for(sub.take(), 1) == (None, 0)
    assert hub.subscribe() is None  # closed


def test_max_clients_and_unsubscribe() -> None:
    hub = Hub(queue_size=1, max_clients=1)
    first = hub.subscribe()
    assert first is not None and hub.subscribe() is None
    hub.unsubscribe(first)
    assert hub.subscribe() is not None


def _envelope(**over: object) -> EventEnvelope:
    data: dict[str, object] = {
        "event_id": "31337:0xaa:0",
        "name": "FundingRateUpdated",
        "chain_id": 31337,
        "contract": "0xcc",
        "block_number": 3,
        "block_hash": "0xbb",
        "block_timestamp": 1_700_000_000,
        "tx_hash": "0xaa",
        "log_index": 0,
        "market_id": "0xab",
        "market": "ETH/USDT",
        "args": {"fundingRate": str(10**14)},
    }
    data.update(over)
    return EventEnvelope.model_validate(data)


async def test_feed_handle_pushes_dedups_and_skips_malformed() -> None:
    hub = Hub(queue_size=10)
    sub = hub.subscribe()
    assert sub is not None
    feed = KafkaFeed("127.0.0.1:1", "t", hub)
    env = _envelope()
    assert feed.handle(encode_event(env))
    assert not feed.handle(encode_event(env))  # redelivery
    assert feed.handle(encode_event(env.as_reverted()))  # the compensating event is new
    # a reorg back to the first fork: the event returns and is shown again, not a duplicate
    assert feed.handle(encode_event(env))
    # the same transaction re-mined in another block: same event id, a new event
    assert feed.handle(encode_event(env.model_copy(update={"block_hash": "0xbe"})))
    assert not feed.handle(b"{not json")
    assert not feed.handle(json.dumps({"v": 1, "name": "Nope"}).encode())
    assert not feed.handle(None)
    status = feed.status()
    assert (status["pushed"], status["duplicates"], status["malformed"]) == (4, 1, 3)
    text, _ = await sub.take()
    assert text is not None
    message = json.loads(text)
    assert message["type"] == "event"
    assert message["event"]["summary"] == "funding rate 0.01% on ETH/USDT"
    text, _ = await sub.take()
    assert text is not None and json.loads(text)["event"]["reverted"] is True
    text, _ = await sub.take()
    assert text is not None and json.loads(text)["event"]["reverted"] is False


def test_sql_builders_number_their_parameters() -> None:
    page, count, args = positions_sql(
        parse_position_filter([("status", "open"), ("owner", "0x" + "11" * 20), ("limit", "5")])
    )
    assert "$1" in page and "$2" in page and "LIMIT $3 OFFSET $4" in page
    assert "$3" not in count
    assert args == ["open", "0x" + "11" * 20, 5, 0]
    page, _, args = positions_sql(parse_position_filter([("sort", "size"), ("order", "asc")]))
    assert "ORDER BY p.size ASC, p.token_id ASC LIMIT $1 OFFSET $2" in page
    assert args == [50, 0]
    page, count, args = liquidations_sql(parse_liquidation_filter([("since", "5")]))
    assert "l.block_timestamp >= $1" in page and "LIMIT $2 OFFSET $3" in page
    page, _, args = funding_sql(parse_funding_filter([("order", "asc")], "ETH/USDT"))
    assert "ORDER BY f.block_number ASC, f.log_index ASC" in page and len(args) == 3
