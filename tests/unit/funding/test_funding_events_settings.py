"""FundingRateUpdated decoding from Kafka messages, and the updater's settings."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.funding.events import (
    FundingEvent,
    FundingEventListener,
    FundingParamsEvent,
    parse_funding_event,
)
from services.funding.settings import load_funding_settings, load_status_settings
from shared.chain.deployment import market_id_hex
from shared.config import ConfigError
from shared.events.schema import EventEnvelope, MalformedEventError, encode_event, make_event_id

ETH = market_id_hex("ETH/USDT")
TX = "0x" + "ab" * 32


def envelope(name: str = "FundingRateUpdated", log_index: int = 0, **over: Any) -> bytes:
    args = {
        "marketId": ETH,
        "fundingRate": "-100000000000000",
        "cumulativeFundingLong": "123",
        "cumulativeFundingShort": "-120",
        "markTwap": "2000000000000000000000",
        "indexTwap": "2001000000000000000000",
        "timestamp": "1795632256",
    }
    fields: dict[str, Any] = dict(
        event_id=make_event_id(31337, TX, log_index),
        name=name,
        chain_id=31337,
        contract="PositionManager",
        block_number=42,
        block_hash="0x" + "cd" * 32,
        block_timestamp=1795632256,
        tx_hash=TX,
        log_index=log_index,
        market_id=ETH,
        market="ETH/USDT",
        args=args,
    )
    fields.update(over)
    return encode_event(EventEnvelope(**fields))


def test_parse_funding_event() -> None:
    ev = parse_funding_event(envelope())
    assert ev is not None
    assert ev.market_id == ETH and ev.rate_wad == -(10**14) and ev.timestamp == 1795632256
    assert ev.tx_hash == TX and ev.block_number == 42 and not ev.reverted
    assert parse_funding_event(envelope(name="PositionOpened")) is None
    reverted = parse_funding_event(envelope(reverted=True))
    assert reverted is not None and reverted.reverted


@pytest.mark.parametrize(
    "raw",
    [
        b"not json",
        b"[1, 2]",
        json.dumps({"v": 99}).encode(),
        envelope(args={"marketId": ETH}),  # fields missing
        envelope(args={"fundingRate": "x", "marketId": ETH}),
    ],
)
def test_malformed_messages_raise(raw: bytes) -> None:
    with pytest.raises(MalformedEventError):
        parse_funding_event(raw)


def test_listener_handles_counts_and_deduplicates() -> None:
    got: list[FundingEvent] = []
    listener = FundingEventListener(
        "127.0.0.1:1", "t", {ETH.upper().replace("0X", "0x")}, got.append
    )
    assert listener.handle(envelope()) is not None
    assert listener.handle(envelope()) is None  # redelivery
    assert listener.handle(envelope(reverted=True)) is not None  # the reorg compensation is new
    # the same transaction re-mined in another block: same event id, a new event
    assert listener.handle(envelope(block_hash="0x" + "ee" * 32)) is not None
    assert listener.handle(envelope()) is not None  # after its revert: the fork came back
    assert listener.handle(b"{garbage") is None
    assert listener.handle(envelope(name="PositionOpened", log_index=3)) is None
    other = market_id_hex("BTC/USDT")
    assert listener.handle(envelope(log_index=5, market_id=other)) is None
    assert listener.handle(None) is None
    assert len(got) == 4 and listener.received == 4 and listener.decode_errors == 1
    assert listener.status()["decode_errors"] == 1


# ---------------------------------------------------------------- settings


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    for key in (
        "PRIVATE_KEY",
        "FUNDING_PRIVATE_KEY",
        "KEEPER_PRIVATE_KEY",
        "DEPLOYMENT_FILE",
        "POSITION_MANAGER_ADDRESS",
        "MARKETS",
        "LEADER_ELECTION",
        "POD_NAME",
        "POD_NAMESPACE",
        "LEASE_NAMESPACE",
        "FUNDING_INTERVAL_SECONDS",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no .env from the checkout
    return tmp_path


PM = "0x" + "11" * 20
KEY = "0x" + "42" * 32


def test_funding_wallet_is_required(clean_env: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_funding_settings(rpc_url="http://127.0.0.1:8545", position_manager_address=PM)
    assert "FUNDING_PRIVATE_KEY" in err.value.problems
    # PRIVATE_KEY is the fallback; status needs no wallet at all
    s = load_funding_settings(
        rpc_url="http://127.0.0.1:8545", position_manager_address=PM, private_key=KEY
    )
    assert s.wallet_key("funding") is not None
    assert load_status_settings(rpc_url="http://127.0.0.1:8545", position_manager_address=PM)


def test_every_problem_is_listed_without_secrets(clean_env: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_funding_settings(
            rpc_url="nope",
            funding_private_key="0x1234" + "zz" * 30,
            leader_election="zookeeper",
            funding_grace_seconds=-1,
            position_manager_address=PM,
        )
    problems = err.value.problems
    assert {"RPC_URL", "FUNDING_PRIVATE_KEY", "LEADER_ELECTION", "FUNDING_GRACE_SECONDS"} <= set(
        problems
    )
    assert "zz" not in str(err.value)


def test_cross_field_checks(clean_env: Path) -> None:
    with pytest.raises(ConfigError) as err:
        load_funding_settings(
            rpc_url="http://127.0.0.1:8545",
            funding_private_key=KEY,
            deployment_file=str(clean_env / "missing.json"),
            leader_election="kubernetes",
            lease_duration_seconds=5,
            lease_renew_deadline_seconds=10,
        )
    assert set(err.value.problems) == {"DEPLOYMENT_FILE", "LEASE_RENEW_DEADLINE_SECONDS"}


def test_derived_values(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAME", "perpex-eth-funding-7d9f-abcde")
    monkeypatch.setenv("POD_NAMESPACE", "markets")
    monkeypatch.setenv("LEADER_ELECTION", "Kubernetes")
    monkeypatch.setenv("MARKETS", "ETH/USDT")
    s = load_funding_settings(
        rpc_url="http://127.0.0.1:8545", position_manager_address=PM, funding_private_key=KEY
    )
    assert s.leader_election == "kubernetes"
    assert s.identity == "perpex-eth-funding-7d9f-abcde"
    assert s.namespace == "markets"
    assert s.election_name == "perpex-funding-eth-usdt"
    assert s.position_manager() == PM
    assert s.min_balance_wei == 5 * 10**16
    assert "42" * 32 not in repr(s.safe_dump())


def test_funding_wallet_is_not_the_keepers(clean_env: Path) -> None:
    funding, keeper = "0x" + "01" * 32, "0x" + "02" * 32
    s = load_funding_settings(
        rpc_url="http://127.0.0.1:8545",
        position_manager_address=PM,
        funding_private_key=funding,
        keeper_private_key=keeper,
        private_key=KEY,
    )
    wallet = s.wallet_key("funding")
    assert wallet is not None and wallet.get_secret_value() == funding


def test_a_funding_parameter_change_reaches_its_own_callback() -> None:
    """FundingParamsUpdated (a governance change) goes to on_params, once per event, so the
    updater re-reads the market's interval without a restart."""
    rates: list[FundingEvent] = []
    params: list[FundingParamsEvent] = []
    listener = FundingEventListener(
        "127.0.0.1:1", "t", {ETH}, rates.append, on_params=params.append
    )
    change = envelope(
        name="FundingParamsUpdated",
        log_index=9,
        args={"marketId": ETH, "fundingInterval": "3600", "maxFundingRate": str(10**16)},
    )
    assert listener.handle(change) is not None
    assert listener.handle(change) is None  # redelivery
    assert rates == [] and len(params) == 1
    assert params[0].interval == 3600 and params[0].max_funding_rate == 10**16
    with pytest.raises(MalformedEventError, match="FundingParamsUpdated"):
        parse_funding_event(envelope(name="FundingParamsUpdated", args={"marketId": ETH}))
