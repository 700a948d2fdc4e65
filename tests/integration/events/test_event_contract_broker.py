"""The event contract against the real broker: keys land on the partition the keeper's
ownership expects."""

from __future__ import annotations

from services.keeper.partitions import Ownership
from shared.events.keys import market_key, partition_for, token_key
from shared.kafka import make_producer


async def _publish(bootstrap: str, topic: str, keys: list[bytes], tag: str) -> dict[bytes, int]:
    """One message per key, valued `<tag>:<key>`; returns each key's partition as acked."""
    producer = make_producer(bootstrap)
    await producer.start()
    try:
        placed = {}
        for key in keys:
            meta = await producer.send_and_wait(topic, f"{tag}:".encode() + key, key=key)
            placed[key] = meta.partition
        return placed
    finally:
        await producer.stop()


async def test_keys_land_where_the_keepers_ownership_puts_them(
    kafka_bootstrap: str, topic: str
) -> None:
    tokens = list(range(60))
    keys = [token_key(t) for t in tokens] + [market_key(f"0x{m:064x}") for m in range(10)]
    placed = await _publish(kafka_bootstrap, topic, keys, "k")
    assert len(set(placed.values())) == 3  # every partition of the 3 got some
    for key, partition in placed.items():
        assert partition_for(key, range(3)) == partition
    for token in tokens:
        partition = placed[token_key(token)]
        assert Ownership(3, {partition}).owns_token(token)
        assert not Ownership(3, set(range(3)) - {partition}).owns_token(token)
