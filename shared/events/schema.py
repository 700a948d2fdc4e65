"""The versioned JSON schema of decoded chain events on Kafka.

One message per chain log. `event_id` = "<chain id>:<tx hash>:<log index>" is stable across
re-deliveries, so consumers deduplicate on it. When a reorg removes a log from the canonical
chain, the indexer publishes the same envelope again with `reverted: true` (a compensating
event); consumers undo its effect.

Integers in `args` are decimal strings (uint256 does not fit a JSON double); addresses and
bytes32 values are 0x-hex strings; bools stay bools.

Event names: shared.events.names.EventName. Message key (shared.events.keys.event_key): the token
id for position events (so one position's events stay in order on one partition), the market id
for market-wide events such as FundingRateUpdated.

Version 2 (the contracts' economic-safety release): funding is zero-sum between longs and shorts
and accrues every second, each side on its own cumulative index, so FundingRateUpdated carries
both sides' indexes at `timestamp` (`cumulativeFundingLong`, `cumulativeFundingShort`) and
`fundingPerSecond`, and `fundingRate` is the rate set for the coming period; PositionOpened,
MarginChanged and PositionReduced carry the position's `entryFundingIndex` (its side's);
PositionClosed carries the trading `fee`; a liquidation may be partial: PositionLiquidated carries
the `size` unwound, the `remainingSize`, the `fundingPayment` settled and the penalty's
`insuranceFee`; a partial close is PositionDecreased; after either, when something remains,
PositionReduced follows with the position's new `size`, `notional`, `collateral` and
`entryFundingIndex`.

Governance (additive within version 2): the PositionManager's parameter events
(RiskParamsUpdated, SafetyParamsUpdated, FundingParamsUpdated, ParamChangeScheduled,
FundingRewardSet, GuardianSet, ParamChangeDelaySet; keyed by market when they name one) and, when
the deployment is governed, the Governor's proposal lifecycle (ProposalCreated, VoteCast,
ProposalQueued, ProposalExecuted, ProposalCanceled). Array arguments (a proposal's targets,
values, calldatas) are JSON arrays of the same encodings; `proposalId` is a decimal string.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from shared.events.keys import event_key
from shared.events.names import EVENT_NAMES

__all__ = [
    "EVENT_NAMES",
    "SCHEMA_VERSION",
    "EventEnvelope",
    "MalformedEventError",
    "decode_event",
    "encode_event",
    "make_event_id",
]

SCHEMA_VERSION = 2


class MalformedEventError(ValueError):
    """A message that is not a valid Perp-EX event envelope; the reason names the problem."""


def make_event_id(chain_id: int, tx_hash: str, log_index: int) -> str:
    return f"{chain_id}:{tx_hash.lower()}:{log_index}"


class EventEnvelope(BaseModel):
    # strict: a number is a JSON number and a flag a JSON bool, never "5" or "yes"
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)

    v: int = Field(default=SCHEMA_VERSION, description="schema version")
    event_id: str
    name: str
    chain_id: int = Field(gt=0)
    contract: str
    block_number: int = Field(ge=0)
    block_hash: str
    # seconds, below year 10000 (what a datetime can show)
    block_timestamp: int = Field(ge=0, lt=253_402_300_800)
    tx_hash: str
    log_index: int = Field(ge=0)
    market_id: str | None = None
    market: str | None = None  # pair, e.g. "ETH/USDT", when the indexer knows it
    token_id: int | None = Field(default=None, ge=0)
    args: dict[str, Any] = Field(default_factory=dict)
    reverted: bool = False
    trace: dict[str, str] | None = None  # W3C trace context of the producing span, if any

    @property
    def key(self) -> bytes:
        return event_key(self.token_id, self.market_id, self.event_id)

    def int_arg(self, name: str) -> int:
        return int(self.args[name])

    def as_reverted(self) -> EventEnvelope:
        return self.model_copy(update={"reverted": True})


def encode_event(event: EventEnvelope) -> bytes:
    return event.model_dump_json(exclude_none=True).encode()


def decode_event(raw: bytes | str) -> EventEnvelope:
    """Parse one message. Raises MalformedEventError naming what is wrong."""
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise MalformedEventError(f"not JSON: {exc}") from None
    except RecursionError:
        raise MalformedEventError("not JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise MalformedEventError(f"expected a JSON object, got {type(data).__name__}")
    version = data.get("v")
    if type(version) is not int or version != SCHEMA_VERSION:
        raise MalformedEventError(
            f"unsupported schema version {version!r} (expected {SCHEMA_VERSION})"
        )
    try:
        event = EventEnvelope.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}"
            for e in exc.errors(include_url=False, include_input=False)
        )
        raise MalformedEventError(problems) from None
    if event.name not in EVENT_NAMES:
        raise MalformedEventError(f"unknown event name {event.name!r}")
    return event
