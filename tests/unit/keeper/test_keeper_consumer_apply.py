"""The consumer skips (and counts) a valid envelope whose args do not fit its event, instead of
letting the error end its loop; the messages after it still apply."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from keeper_helpers import margin_changed, opened

from services.keeper.book import PositionBook
from services.keeper.consumer import EventConsumer
from shared.events.schema import encode_event


async def _noop(*_: Any) -> None:
    return None


def _record(offset: int, value: bytes) -> Any:
    return SimpleNamespace(topic="t", partition=0, offset=offset, value=value, headers=[])


async def test_args_that_do_not_fit_are_skipped_and_counted() -> None:
    book = PositionBook()
    consumer = EventConsumer("127.0.0.1:1", "t", "g", book, _noop, _noop, _noop)
    broken = opened(1, 10).model_copy(update={"args": {"tokenId": "1"}})  # no owner, no size...
    assert consumer._apply(_record(0, encode_event(broken))) is None
    assert consumer.stats["malformed"] == 1 and book.get(1) is None
    result = consumer._apply(_record(1, encode_event(opened(2, 11))))
    assert result is not None and result.applied and book.get(2) is not None
    changed = consumer._apply(_record(2, encode_event(margin_changed(2, 12, 7))))
    assert changed is not None and changed.applied
