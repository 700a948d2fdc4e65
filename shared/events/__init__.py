from shared.events.schema import (
    EVENT_NAMES,
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
    "MalformedEventError",
    "decode_event",
    "encode_event",
    "make_event_id",
]
