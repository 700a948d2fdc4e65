"""Which replica owns which position (pure).

The indexer publishes each position's events keyed by its token (shared.events.keys.token_key),
so the producer's default partitioner puts all of a position's events on one partition. A keeper
replica handles exactly the positions whose key maps, by that same partitioner
(shared.events.keys.partition_for), to a partition the consumer group assigned to it, so two
replicas never work on the same position.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.events.keys import partition_for, token_key


class Ownership:
    """The partitions assigned to this replica, out of `partitions` in the topic."""

    def __init__(self, partitions: int = 0, owned: Iterable[int] = ()):
        self.partitions = partitions
        self.owned: frozenset[int] = frozenset(owned)
        self._cache: dict[int, int] = {}

    def partition_of_token(self, token_id: int) -> int:
        p = self._cache.get(token_id)
        if p is None:
            p = partition_for(token_key(token_id), range(self.partitions))
            if len(self._cache) > 1_000_000:
                self._cache.clear()
            self._cache[token_id] = p
        return p

    def owns_token(self, token_id: int) -> bool:
        if not self.owned or self.partitions <= 0:
            return False
        return self.partition_of_token(token_id) in self.owned

    def with_partitions(self, partitions: int, owned: Iterable[int]) -> Ownership:
        """A new assignment (keeps the token -> partition cache when the count is unchanged)."""
        new = Ownership(partitions, owned)
        if partitions == self.partitions:
            new._cache = self._cache
        return new
