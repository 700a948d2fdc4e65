"""KeeperSettings: wallet required and separate from the funding updater's; exit 2 listing
every bad field without printing a key."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from services.keeper.cli import keeper as keeper_cmd
from services.keeper.settings import load_keeper_settings, resolve_targets
from shared.config import ConfigError

K1 = "0x" + "11" * 32
K2 = "0x" + "22" * 32
DEPLOYMENT = {
    "chain_id": 31337,
    "start_block": 0,
    "deployer": "0x" + "aa" * 20,
    "contracts": {
        "PositionManager": "0x" + "01" * 20,
        "PositionNFT": "0x" + "02" * 20,
        "Vault": "0x" + "03" * 20,
        "CollateralToken": "0x" + "04" * 20,
        "PriceOracle": "0x" + "05" * 20,
    },
    "markets": {},
}
ENV_KEYS = (
    "RPC_URL",
    "PRIVATE_KEY",
    "KEEPER_PRIVATE_KEY",
    "FUNDING_PRIVATE_KEY",
    "ALLOW_SHARED_WALLET",
    "DEPLOYMENT_FILE",
    "POSITION_MANAGER_ADDRESS",
    "MARKETS",
    "HEALTH_BATCH_SIZE",
    "MARGIN_BUFFER",
    "KEEPER_MIN_PROFIT_RATIO",
    "KEEPER_NATIVE_PRICE",
    "KEEPER_NATIVE_PRICE_MARKET",
)


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in ENV_KEYS:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env


def _base(**over: object) -> dict[str, object]:
    values: dict[str, object] = {
        "rpc_url": "http://127.0.0.1:8545",
        "position_manager_address": "0x" + "01" * 20,
    }
    values.update(over)
    return values


def test_defaults_and_wallet() -> None:
    s = load_keeper_settings(**_base(keeper_private_key=K1, funding_private_key=K2))
    assert s.keeper_group_id == "perpex-keeper"
    assert s.health_batch_size == 500 and s.margin_buffer == 0.10
    assert s.allow_shared_wallet is False
    assert s.min_balance_wei == int(0.05 * 10**18)


def test_profitability_defaults() -> None:
    s = load_keeper_settings(**_base(keeper_private_key=K1, funding_private_key=K2))
    assert s.keeper_min_profit_ratio == 1.0 and s.profit_check
    assert s.keeper_native_price is None and s.keeper_native_price_market == "ETH/USDT"
    s = load_keeper_settings(
        **_base(
            keeper_private_key=K1,
            funding_private_key=K2,
            keeper_min_profit_ratio="0",
            keeper_native_price="3000.5",
            keeper_native_price_market=" eth/usdc ",
        )
    )
    assert not s.profit_check and s.keeper_native_price == 3000.5
    assert s.keeper_native_price_market == "ETH/USDC"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("keeper_min_profit_ratio", "-0.5"),
        ("keeper_min_profit_ratio", "nan"),
        ("keeper_min_profit_ratio", "lots"),
        ("keeper_native_price", "0"),
        ("keeper_native_price", "-3000"),
        ("keeper_native_price", "inf"),
        ("keeper_native_price_market", "ETHUSDT"),
        ("keeper_native_price_market", ""),
    ],
)
def test_bad_profitability_settings_name_the_field(field: str, value: str) -> None:
    with pytest.raises(ConfigError) as err:
        load_keeper_settings(
            **_base(keeper_private_key=K1, funding_private_key=K2, **{field: value})
        )
    assert set(err.value.problems) == {field.upper()}


def test_missing_wallet_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as err:
        load_keeper_settings(**_base())
    assert "KEEPER_PRIVATE_KEY" in err.value.problems


def test_shared_wallet_refused_unless_allowed() -> None:
    with pytest.raises(ConfigError) as err:
        load_keeper_settings(**_base(private_key=K1))  # both roles fall back to PRIVATE_KEY
    assert "KEEPER_PRIVATE_KEY" in err.value.problems
    assert K1[2:] not in str(err.value)
    with pytest.raises(ConfigError):
        load_keeper_settings(
            **_base(keeper_private_key=K1, funding_private_key=K1.upper().replace("0X", "0x"))
        )
    s = load_keeper_settings(**_base(private_key=K1, allow_shared_wallet=True))
    assert s.wallet_key("keeper") == s.wallet_key("funding")


def test_every_problem_listed_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PRIVATE_KEY", K1)
    with pytest.raises(ConfigError) as err:
        load_keeper_settings(**_base(health_batch_size=0, margin_buffer=-1))
    assert {"HEALTH_BATCH_SIZE", "MARGIN_BUFFER", "KEEPER_PRIVATE_KEY"} <= set(err.value.problems)


def test_addresses_required() -> None:
    with pytest.raises(ConfigError) as err:
        load_keeper_settings(rpc_url="http://x:1", keeper_private_key=K1, funding_private_key=K2)
    assert "DEPLOYMENT_FILE" in err.value.problems


def test_targets_from_deployment_and_markets(tmp_path: Path) -> None:
    import json

    dep = tmp_path / "d.json"
    data = dict(DEPLOYMENT)
    from shared.chain.deployment import market_id_hex

    data["markets"] = {
        "ETH/USDT": {
            "market_id": market_id_hex("ETH/USDT"),
            "vamm": "0x" + "06" * 20,
            "oracle_feed": "0x" + "07" * 20,
            "initial_price": "2000",
        }
    }
    dep.write_text(json.dumps(data))
    s = load_keeper_settings(
        rpc_url="http://x:1", keeper_private_key=K1, funding_private_key=K2, deployment_file=dep
    )
    t = resolve_targets(s)
    assert t.position_manager.lower() == "0x" + "01" * 20
    assert t.markets == {market_id_hex("ETH/USDT"): "ETH/USDT"} and t.discover_markets
    s2 = s.model_copy(update={"markets": "BTC/USDT"})
    t2 = resolve_targets(s2)
    assert t2.markets == {market_id_hex("BTC/USDT"): "BTC/USDT"} and not t2.discover_markets


def test_cli_exits_2_without_printing_keys(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPC_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("PRIVATE_KEY", K1)
    monkeypatch.setenv("POSITION_MANAGER_ADDRESS", "0x" + "01" * 20)
    monkeypatch.setenv("HEALTH_BATCH_SIZE", "0")
    result = CliRunner().invoke(keeper_cmd, [])
    assert result.exit_code == 2
    out = result.output
    assert "KEEPER_PRIVATE_KEY" in out and "HEALTH_BATCH_SIZE" in out
    assert K1[2:] not in out
