from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.indexer.settings import load_indexer_settings, resolve_targets
from shared.chain.deployment import market_id_hex
from shared.config import ConfigError

PM = "0x" + "11" * 20
NFT = "0x" + "22" * 20


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in (
        "POSITION_MANAGER_ADDRESS",
        "POSITION_NFT_ADDRESS",
        "DEPLOYMENT_FILE",
        "START_BLOCK",
        "MARKETS",
        "CHUNK_SIZE",
        "MAX_CHUNK_SIZE",
        "CONFIRMATIONS",
    ):
        monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray .env
    monkeypatch.setenv("RPC_URL", "http://127.0.0.1:8545")


def deployment_file(tmp_path: Path) -> Path:
    data = {
        "chain_id": 31337,
        "start_block": 5,
        "deployer": "0x" + "aa" * 20,
        "contracts": {
            "PositionManager": PM,
            "PositionNFT": NFT,
            "Vault": "0x" + "33" * 20,
            "CollateralToken": "0x" + "44" * 20,
            "PriceOracle": "0x" + "55" * 20,
        },
        "markets": {
            "ETH/USDT": {
                "market_id": market_id_hex("ETH/USDT"),
                "vamm": "0x" + "66" * 20,
                "oracle_feed": "0x" + "77" * 20,
                "initial_price": "2000",
            }
        },
    }
    path = tmp_path / "deployment.json"
    path.write_text(json.dumps(data))
    return path


def test_defaults_with_addresses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSITION_MANAGER_ADDRESS", PM)
    monkeypatch.setenv("POSITION_NFT_ADDRESS", NFT)
    s = load_indexer_settings()
    assert (s.chunk_size, s.max_chunk_size, s.confirmations, s.reorg_window) == (9, 2000, 0, 128)
    t = resolve_targets(s)
    assert t.addresses == [PM, NFT] and t.start_block == 0 and t.market_filter is None


def test_missing_addresses_is_a_clear_error() -> None:
    with pytest.raises(ConfigError) as err:
        load_indexer_settings()
    assert "DEPLOYMENT_FILE" in str(err.value)


def test_bad_values_listed_together(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POSITION_MANAGER_ADDRESS", PM)
    monkeypatch.setenv("POSITION_NFT_ADDRESS", NFT)
    monkeypatch.setenv("CHUNK_SIZE", "0")
    monkeypatch.setenv("CONFIRMATIONS", "-1")
    with pytest.raises(ConfigError) as err:
        load_indexer_settings()
    assert set(err.value.problems) >= {"CHUNK_SIZE", "CONFIRMATIONS"}


def test_deployment_file_fills_addresses_start_and_markets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("DEPLOYMENT_FILE", str(deployment_file(tmp_path)))
    t = resolve_targets(load_indexer_settings())
    assert t.position_manager == PM and t.start_block == 5
    assert t.pair_of(market_id_hex("ETH/USDT")) == "ETH/USDT"
    monkeypatch.setenv("START_BLOCK", "9")
    monkeypatch.setenv("MARKETS", "ETH/USDT")
    t = resolve_targets(load_indexer_settings())
    assert t.start_block == 9 and t.market_filter == {market_id_hex("ETH/USDT")}


def test_missing_deployment_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DEPLOYMENT_FILE", str(tmp_path / "nope.json"))
    with pytest.raises(ConfigError):
        load_indexer_settings()


@pytest.mark.parametrize("window", ["1", "0", "-3"])
def test_a_reorg_window_that_can_roll_nothing_back_is_refused(
    monkeypatch: pytest.MonkeyPatch, window: str
) -> None:
    monkeypatch.setenv("POSITION_MANAGER_ADDRESS", PM)
    monkeypatch.setenv("POSITION_NFT_ADDRESS", NFT)
    monkeypatch.setenv("REORG_WINDOW", window)
    with pytest.raises(ConfigError) as err:
        load_indexer_settings()
    assert list(err.value.problems) == ["REORG_WINDOW"]
    assert "at least 2" in err.value.problems["REORG_WINDOW"]
    monkeypatch.setenv("REORG_WINDOW", "2")
    assert load_indexer_settings().reorg_window == 2
