"""The names of the chain events Perp-EX publishes, one enum for producers and consumers.

`EventName` is a `StrEnum` whose members are named as the contracts' ABI names them and whose
values are those names: a member compares equal to (and hashes as) the plain string, so an
envelope decoded from Kafka (`name` a str) matches it, and JSON written from one is unchanged.
"""

from __future__ import annotations

from enum import StrEnum


class EventName(StrEnum):
    # the PositionNFT
    PositionMinted = "PositionMinted"
    PositionBurned = "PositionBurned"
    # the PositionManager's positions
    PositionOpened = "PositionOpened"
    PositionClosed = "PositionClosed"
    PositionLiquidated = "PositionLiquidated"
    PositionReduced = "PositionReduced"
    PositionDecreased = "PositionDecreased"
    MarginChanged = "MarginChanged"
    # the PositionManager's markets
    FundingRateUpdated = "FundingRateUpdated"
    MarketAdded = "MarketAdded"
    MarketPaused = "MarketPaused"
    # the PositionManager's parameter changes (applied, or scheduled on a live market)
    RiskParamsUpdated = "RiskParamsUpdated"
    SafetyParamsUpdated = "SafetyParamsUpdated"
    FundingParamsUpdated = "FundingParamsUpdated"
    ParamChangeScheduled = "ParamChangeScheduled"
    FundingRewardSet = "FundingRewardSet"
    GuardianSet = "GuardianSet"
    ParamChangeDelaySet = "ParamChangeDelaySet"
    # the Governor's proposal lifecycle
    ProposalCreated = "ProposalCreated"
    VoteCast = "VoteCast"
    ProposalQueued = "ProposalQueued"
    ProposalExecuted = "ProposalExecuted"
    ProposalCanceled = "ProposalCanceled"


PARAM_EVENT_NAMES = frozenset(
    {
        EventName.RiskParamsUpdated,
        EventName.SafetyParamsUpdated,
        EventName.FundingParamsUpdated,
        EventName.ParamChangeScheduled,
        EventName.FundingRewardSet,
        EventName.GuardianSet,
        EventName.ParamChangeDelaySet,
    }
)
GOVERNOR_EVENT_NAMES = frozenset(
    {
        EventName.ProposalCreated,
        EventName.VoteCast,
        EventName.ProposalQueued,
        EventName.ProposalExecuted,
        EventName.ProposalCanceled,
    }
)
# plain strings (what a decoded envelope carries)
EVENT_NAMES: frozenset[str] = frozenset(name.value for name in EventName)
