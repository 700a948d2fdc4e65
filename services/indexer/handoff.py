"""The drainer's hand-over policy (pure): which unsent outbox rows it sends from memory, which
it reads or rebuilds from the database, and which it waits for.

The indexer hands each chunk's committed rows over with their messages (`offer`, at commit,
before the drainer can see them in the database); they are kept up to a budget of messages
and sent without a read back. A by-reference row that is not in memory is rebuilt from
`events` when it is older than this process (its id is at most the outbox's last id when the
drainer first looked) or was handed over (kept or not, past the budget). A newer row is one
whose commit the drainer saw before the hand-over that follows it: the drainer waits for that,
`grace_s` at most (one timer for all rows held), then rebuilds what waits."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Sequence

from services.indexer.outbox_rows import OutboxRef, OutboxRow

log = logging.getLogger(__name__)
OFFER_GRACE_S = 10.0


class Handoff:
    def __init__(
        self,
        memory_messages: int,
        grace_s: float = OFFER_GRACE_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.budget = memory_messages
        self.grace_s = grace_s
        self._clock = clock
        self.memory: dict[int, OutboxRow] = {}
        self.messages = 0  # held in memory
        self.rebuild_upto: int | None = None  # None: the outbox's last id not read yet
        self._held_since: float | None = None
        self.held = False  # the last choice stopped at a row whose hand-over is awaited

    def start_from(self, last_id: int) -> None:
        """Rows up to `last_id` were written before this process: rebuild them when due."""
        self.rebuild_upto = max(self.rebuild_upto or 0, last_id)

    def offer(self, rows: Iterable[OutboxRow]) -> None:
        for row in rows:
            self.rebuild_upto = max(self.rebuild_upto or 0, row.id)
            n = len(row.messages)
            if self.messages + n <= self.budget:
                self.memory[row.id] = row
                self.messages += n
            # else: rebuilt from the database when its turn comes
        self._held_since = None

    def sendable(self, refs: Sequence[OutboxRef]) -> list[OutboxRef]:
        """The leading rows that can go now: in memory, inline, or allowed a rebuild."""
        self.held = False
        out = []
        for ref in refs:
            if ref.id not in self.memory and not ref.inline and not self._may_rebuild(ref.id):
                self.held = True
                break
            out.append(ref)
        return out

    def _may_rebuild(self, row_id: int) -> bool:
        if row_id <= (self.rebuild_upto or 0):
            return True
        now = self._clock()
        if self._held_since is None:
            self._held_since = now
        if now - self._held_since > self.grace_s:
            # No hand-over for that long while rows wait (one lost with a failed commit reply,
            # say): rebuild what is waiting, until a hand-over arrives again.
            log.warning("outbox: row %d was not handed over; rebuilding it", row_id)
            self.rebuild_upto = row_id
            return True
        return False

    def forget(self, ids: Iterable[int]) -> None:
        """Sent (or given up on): memory lets these rows go."""
        for row_id in ids:
            row = self.memory.pop(row_id, None)
            if row is not None:
                self.messages -= len(row.messages)
