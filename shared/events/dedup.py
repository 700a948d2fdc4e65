"""A bounded memory of the event deliveries seen lately (delivery on Kafka is at-least-once).

A delivery is known by (event id, block hash, reverted): a compensating (reverted) copy is a new
event, and so is the same transaction re-mined in another block after a reorg (same chain, tx and
log index, so the same event id, but another block hash).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Hashable
from typing import Protocol

DeliveryKey = tuple[str, str, bool]


class Delivery(Protocol):
    @property
    def event_id(self) -> str: ...

    @property
    def block_hash(self) -> str: ...

    @property
    def reverted(self) -> bool: ...


def delivery_key(event: Delivery) -> DeliveryKey:
    return (event.event_id, event.block_hash, event.reverted)


class RecentKeys:
    """A bounded set remembering the last `size` keys added or hit."""

    def __init__(self, size: int = 4096):
        self.size = size
        self._keys: OrderedDict[Hashable, None] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._keys

    def seen(self, key: Hashable) -> bool:
        """True when `key` was added before; otherwise remember it and return False."""
        if key in self._keys:
            self._keys.move_to_end(key)
            return True
        self._keys[key] = None
        if len(self._keys) > self.size:
            self._keys.popitem(last=False)
        return False

    def first_time(self, event: Delivery) -> bool:
        """Whether this delivery is new; remembers it. An event and its revert make each other
        new again, so a reorg that switches forks and back delivers the returning event (it is
        not taken for a redelivery)."""
        return self.new_delivery(delivery_key(event))

    def new_delivery(self, key: DeliveryKey) -> bool:
        """`first_time` for a delivery known by its key."""
        if key not in self._keys:
            self._keys.pop((key[0], key[1], not key[2]), None)
        return not self.seen(key)
