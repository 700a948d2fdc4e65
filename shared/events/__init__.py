from shared.events.keys import event_key, partition_for, token_key
from shared.events.names import EVENT_NAMES, EventName
from shared.events.schema import (
    SCHEMA_VERSION,
    EventEnvelope,
    MalformedEventError,
    decode_event,
    encode_event,
    make_event_id,
)

__all__ = [
    "EVENT_NAMES",
    "SCHEMA_VERSION",
    "EventEnvelope",
    "EventName",
    "MalformedEventError",
    "decode_event",
    "encode_event",
    "event_key",
    "make_event_id",
    "partition_for",
    "token_key",
]
