from __future__ import annotations

import pytest

from services.dashboard.governance import parse_governance_filter, phase, readable_values
from services.dashboard.live_format import event_summary
from services.dashboard.params import ParamError

WAD = 10**18


@pytest.mark.parametrize(
    ("status", "now", "expected"),
    [
        ("proposed", 99, "voting starts"),
        ("proposed", 100, "voting"),
        ("proposed", 160, "voting"),
        ("proposed", 161, "vote ended"),
        ("queued", 199, "queued"),
        ("queued", 200, "executable"),
        ("executed", 0, "executed"),
        ("canceled", 150, "canceled"),
    ],
)
def test_phase_follows_the_vote_window_and_the_eta(status: str, now: int, expected: str) -> None:
    assert phase(status, 100, 160, 200 if status == "queued" else None, now) == expected


def test_values_read_as_people_read_them() -> None:
    values = readable_values(
        {
            "marketId": "0x" + "ab" * 32,
            "maxLeverage": str(15 * WAD),
            "maintenanceMarginRatio": str(25 * WAD // 1000),
            "fundingInterval": "28800",
            "guardian": "0x" + "12" * 20,
        }
    )
    assert values == {
        "maxLeverage": "15",
        "maintenanceMarginRatio": "2.5%",
        "fundingInterval": "28800",
        "guardian": "0x" + "12" * 20,
    }


def test_a_bad_status_is_named() -> None:
    with pytest.raises(ParamError, match="status"):
        parse_governance_filter([("status", "soon")])
    assert parse_governance_filter([]).status == "all"


def test_feed_lines_for_governance_events() -> None:
    assert event_summary(
        "ProposalCreated", None, {"proposalId": "12", "description": "pause X"}
    ) == ("proposal 12: pause X")
    assert event_summary("VoteCast", None, {"proposalId": "12", "support": "1", "weight": str(WAD)})
    assert event_summary("ProposalExecuted", None, {"proposalId": "12"}) == "proposal 12 executed"
    line = event_summary(
        "RiskParamsUpdated",
        "ETH/USDT",
        {"maxLeverage": str(7 * WAD), "maintenanceMarginRatio": str(WAD // 40)},
    )
    assert line == "ETH/USDT: max leverage 7x, maintenance 2.5%"
