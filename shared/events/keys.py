"""Kafka message keys of the events, and the partition a key goes to.

The key is the token for position events (a position's events stay in order on one partition),
else the market for market-wide events such as FundingRateUpdated, else the event itself.
`partition_for` is the producer's default partitioner (aiokafka's `DefaultPartitioner`, the
Java client's murmur2 mapping): the indexer's outbox drainer places every message with it, and
a keeper replica works out which positions its assigned partitions hold with it, so the two
always agree.
"""

from __future__ import annotations

from collections.abc import Sequence


def token_key(token_id: int) -> bytes:
    """The key of a position's events."""
    return b"token:%d" % token_id


def market_key(market_id: str) -> bytes:
    """The key of a market-wide event."""
    return b"market:" + market_id.encode()


def event_key(token_id: int | None, market_id: str | None, event_id: str) -> bytes:
    """The key of one event: its token, else its market, else its event id."""
    if token_id is not None:
        return token_key(token_id)
    if market_id is not None:
        return market_key(market_id)
    return event_id.encode()


def partition_for(key: bytes, partitions: Sequence[int]) -> int:
    """The partition the producer sends `key` to, out of the topic's `partitions` (sorted by
    id; for a topic of n partitions, `range(n)`)."""
    # imported here: the schema (which uses the keys) does not need the Kafka client
    from aiokafka.partitioner import DefaultPartitioner

    if not partitions:
        raise ValueError("a topic has at least one partition")
    result: int = DefaultPartitioner()(key, partitions, partitions)
    return result
