"""Fan-out of live messages to WebSocket clients.

One Kafka consumer feeds `Hub.publish`; every connected socket has its own bounded queue. A
publish never waits: when a client's queue is full its oldest message is dropped and counted,
and that client's sender tells the browser how many it missed (so the page re-reads the API).
A slow browser therefore only ever loses its own messages; it never stalls the others.
"""

from __future__ import annotations

import asyncio
from collections import deque

CLOSE = object()  # sentinel: the hub is shutting down


class Subscriber:
    """One client's bounded mailbox. Messages are pre-serialised JSON text."""

    def __init__(self, maxsize: int):
        if maxsize < 1:
            raise ValueError("maxsize must be >= 1")
        self.maxsize = maxsize
        self._items: deque[str | object] = deque()
        self._wakeup = asyncio.Event()
        self.dropped = 0  # since the last take()
        self.dropped_total = 0
        self.closed = False

    def offer(self, message: str | object) -> None:
        if self.closed:
            return
        if message is CLOSE:
            self.closed = True
        elif len(self._items) >= self.maxsize:
            self._items.popleft()
            self.dropped += 1
            self.dropped_total += 1
        self._items.append(message)
        self._wakeup.set()

    def __len__(self) -> int:
        return len(self._items)

    async def take(self) -> tuple[str | None, int]:
        """Wait for the next message. Returns (message, dropped before it); (None, n) on close."""
        while not self._items:
            self._wakeup.clear()
            await self._wakeup.wait()
        item = self._items.popleft()
        dropped, self.dropped = self.dropped, 0
        return (None if item is CLOSE else item), dropped  # type: ignore[return-value]


class Hub:
    def __init__(self, queue_size: int = 256, max_clients: int = 1000):
        self.queue_size = queue_size
        self.max_clients = max_clients
        self._subscribers: set[Subscriber] = set()
        self.published = 0
        self.closed = False

    @property
    def clients(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> Subscriber | None:
        """A new mailbox, or None when the hub is full or closed."""
        if self.closed or len(self._subscribers) >= self.max_clients:
            return None
        sub = Subscriber(self.queue_size)
        self._subscribers.add(sub)
        return sub

    def unsubscribe(self, sub: Subscriber) -> None:
        self._subscribers.discard(sub)

    def publish(self, message: str) -> None:
        self.published += 1
        for sub in self._subscribers:
            sub.offer(message)

    def close(self) -> None:
        self.closed = True
        for sub in list(self._subscribers):
            sub.offer(CLOSE)
        self._subscribers.clear()

    def stats(self) -> dict[str, int]:
        return {
            "clients": len(self._subscribers),
            "published": self.published,
            "queue_size": self.queue_size,
            "dropped": sum(s.dropped_total for s in self._subscribers),
        }
