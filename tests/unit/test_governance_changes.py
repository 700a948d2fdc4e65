"""Readable governance changes -> the calls a proposal executes."""

from __future__ import annotations

import pytest

from shared.governance import WAD, ChangeError, MarketParams, parse_change, parse_value, plan_call

MID = b"\x11" * 32
CURRENT = MarketParams(
    maxLeverage=20 * WAD,
    maintenanceMarginRatio=WAD * 25 // 1000,
    liquidationFeeRatio=WAD * 2 // 100,
    minNotional=440 * WAD,
    liquidationRewardShare=WAD // 2,
    maxSpread=WAD // 100,
    fundingInterval=8 * 3600,
    maxFundingRate=WAD // 100,
    feeRatio=WAD // 1000,
    maxPriceImpact=WAD * 5 // 100,
    maxPriceMovePerBlock=WAD * 25 // 1000,
)


def test_a_market_parameter_keeps_the_setters_other_values() -> None:
    call = plan_call(parse_change("set ETH/USDT maxLeverage 15"), MID, CURRENT)
    assert (call.contract, call.function) == ("pm", "setRiskParams")
    assert call.args == (MID, 15 * WAD, CURRENT.maintenanceMarginRatio, CURRENT.liquidationFeeRatio)
    call = plan_call(parse_change("set BTC/USDT mmr 3%"), MID, CURRENT)
    assert call.args == (MID, 20 * WAD, 3 * WAD // 100, CURRENT.liquidationFeeRatio)
    call = plan_call(parse_change("set ETH/USDT fundingInterval 1h"), MID, CURRENT)
    assert (call.function, call.args) == ("setFundingParams", (MID, 3600, WAD // 100))


def test_vamm_parameters_go_to_the_markets_vamm() -> None:
    call = plan_call(parse_change("set ETH/USDT fee 0.2%"), MID, CURRENT)
    assert (call.contract, call.pair, call.function) == ("vamm", "ETH/USDT", "setParams")
    assert call.args == (2 * WAD // 1000, CURRENT.maxPriceImpact)  # no market id
    call = plan_call(parse_change("set ETH/USDT maxPriceMovePerBlock 1%"), MID, CURRENT)
    assert (call.function, call.args) == ("setBlockPriceMoveLimit", (WAD // 100,))


def test_pause_and_global_settings() -> None:
    assert plan_call(parse_change("pause ETH/USDT"), MID, None).args == (MID, True)
    assert plan_call(parse_change("unpause ETH/USDT"), MID, None).args == (MID, False)
    call = plan_call(parse_change("set fundingReward 2.5"), None, None)
    assert (call.contract, call.function, call.args) == (
        "pm",
        "setFundingReward",
        (25 * WAD // 10,),
    )
    call = plan_call(parse_change("set maxUtilization 90%"), None, None)
    assert (call.contract, call.args) == ("vault", (9 * WAD // 10,))
    addr = "0x" + "ab" * 20
    assert plan_call(parse_change(f"set guardian {addr}"), None, None).args == (addr,)


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("", "empty"),
        ("raise ETH/USDT maxLeverage 15", "unknown action"),
        ("set ETH/USDT maxLeverige 15", "unknown parameter 'maxLeverige'"),
        ("set ETH/USDT maxLeverage fifteen", "not a number"),
        ("set ETH/USDT maxLeverage -3", "negative"),
        ("set ETH/USDT mmr 150%", "ratio above 100%"),
        ("set ETH/USDT fundingInterval 8 hours", "expected"),
        ("set ETH/USDT fundingInterval 8x", "not a duration"),
        ("set eth maxLeverage 15", "not a market pair"),
        ("set fundingRewardz 1", "unknown setting"),
        ("set guardian nobody", "not an address"),
        ("pause", "expected 'pause <PAIR>'"),
        ("set ETH/USDT maxLeverage 0.0000000000000000001", "more than 18 decimals"),
    ],
)
def test_bad_changes_say_what_is_wrong(text: str, problem: str) -> None:
    with pytest.raises(ChangeError, match=problem):
        parse_change(text)


def test_values() -> None:
    assert parse_value("wad", "1_000") == 1000 * WAD
    assert parse_value("ratio", "0.025") == parse_value("ratio", "2.5%") == WAD * 25 // 1000
    assert parse_value("seconds", "30m") == 1800
    assert parse_value("seconds", "2d") == 172800
