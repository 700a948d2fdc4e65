"""Configuration: every bad field is named, exit code 2, and a private key never shows."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from shared.config import BaseServiceSettings, ConfigError, check_chain_id, load_settings

KEY = "0x" + "ab" * 32
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(autouse=True)
def clean_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    for key in list(os.environ):
        if (
            key in BaseServiceSettings.model_fields
            or key.lower() in BaseServiceSettings.model_fields
        ):
            monkeypatch.delenv(key)
    monkeypatch.chdir(tmp_path)  # no stray .env


def test_valid_settings_from_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPC_URL", "http://127.0.0.1:8545")
    monkeypatch.setenv("KEEPER_PRIVATE_KEY", KEY[2:])
    monkeypatch.setenv("GAS_MULTIPLIER", "1.5")
    monkeypatch.setenv("MARKETS", "ETH/USDT, BTC/USDT")
    s = load_settings(BaseServiceSettings)
    assert s.gas_multiplier == 1.5
    assert s.market_list == ["ETH/USDT", "BTC/USDT"]
    key = s.wallet_key("keeper")
    assert key is not None and key.get_secret_value() == KEY  # normalised to 0x-prefixed
    assert s.wallet_key("funding") is None
    assert KEY[2:] not in repr(s) and KEY[2:] not in str(s.safe_dump())


def test_private_key_is_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPC_URL", "http://x:1")
    monkeypatch.setenv("PRIVATE_KEY", KEY)
    s = load_settings(BaseServiceSettings)
    for role in ("keeper", "funding"):
        key = s.wallet_key(role)
        assert key is not None and key.get_secret_value() == KEY


def test_dotenv_file_is_read(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text("RPC_URL=http://10.0.0.1:8545\nMAX_RETRIES=9\n")
    s = load_settings(BaseServiceSettings)
    assert s.rpc_url == "http://10.0.0.1:8545" and s.max_retries == 9


def test_every_bad_field_listed_and_key_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    bad_key = "0x" + "cd" * 31 + "zz"  # right length, not hex
    monkeypatch.setenv("PRIVATE_KEY", bad_key)
    monkeypatch.setenv("GAS_MULTIPLIER", "0.9")
    monkeypatch.setenv("POSITION_MANAGER_ADDRESS", "0x1234")
    with pytest.raises(ConfigError) as info:
        load_settings(BaseServiceSettings, service="keeper")
    problems = info.value.problems
    assert set(problems) == {"RPC_URL", "PRIVATE_KEY", "GAS_MULTIPLIER", "POSITION_MANAGER_ADDRESS"}
    assert "required" in problems["RPC_URL"]
    assert "64 hex digits" in problems["PRIVATE_KEY"]
    assert "greater than or equal to 1" in problems["GAS_MULTIPLIER"]
    text = str(info.value)
    assert text.startswith("invalid keeper configuration")
    assert "cd" * 31 not in text


def test_chain_id_mismatch_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RPC_URL", "http://x:1")
    monkeypatch.setenv("CHAIN_ID", "1")
    s = load_settings(BaseServiceSettings)
    with pytest.raises(ConfigError) as info:
        check_chain_id(s, 31337)
    assert "CHAIN_ID" in info.value.problems
    assert "31337" in info.value.problems["CHAIN_ID"]
    check_chain_id(s.model_copy(update={"chain_id": 31337}), 31337)  # no error when equal


def _run_config(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    base = {
        k: v for k, v in os.environ.items() if k.lower() not in BaseServiceSettings.model_fields
    }
    return subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "config", *args],
        env={**base, **env},
        capture_output=True,
        text=True,
        timeout=60,
        cwd=str(ROOT / "tests"),  # no .env there
    )


def test_cli_exits_2_with_one_message_and_no_key() -> None:
    secret = "0x" + "9f" * 31 + "g1"
    proc = _run_config({"PRIVATE_KEY": secret, "GAS_MULTIPLIER": "0.5"}, "--no-chain")
    assert proc.returncode == 2
    assert "RPC_URL: is required" in proc.stderr
    assert "PRIVATE_KEY:" in proc.stderr and "GAS_MULTIPLIER:" in proc.stderr
    assert "9f9f9f" not in proc.stderr + proc.stdout
    assert "Traceback" not in proc.stderr


def test_safe_dump_masks_the_database_password_and_the_rpc_api_key(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RPC_URL", "https://eth-mainnet.example.org/v2/sEcReTaPiKeY")
    monkeypatch.setenv("DB_URI", "postgresql://perpex:hunter2pw@db.internal:5432/perpex")
    dumped = str(load_settings(BaseServiceSettings).safe_dump())
    assert "sEcReTaPiKeY" not in dumped and "hunter2pw" not in dumped
    assert "https://eth-mainnet.example.org/***" in dumped
    assert "postgresql://perpex:***@db.internal:5432/perpex" in dumped


def test_a_dsn_with_unescaped_characters_is_refused_without_echoing_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("RPC_URL", "http://127.0.0.1:8545")
    monkeypatch.setenv("DB_URI", "postgresql://perpex:Xy/9secret@db:5432/perpex")
    with pytest.raises(ConfigError) as err:
        load_settings(BaseServiceSettings)
    message = str(err.value)
    assert "DB_URI" in message and "percent-encoded" in message
    assert "9secret" not in message and "Xy" not in message


def test_log_lines_carry_no_rpc_api_key_or_database_password() -> None:
    import io
    import logging

    from shared.service import RedactingFormatter

    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(RedactingFormatter("%(levelname)s %(message)s"))
    log = logging.getLogger("perpex.test.redaction")
    log.addHandler(handler)
    log.propagate = False
    try:
        err = OSError("429, message='Too Many Requests', url='https://rpc.example/v2/aPiKeY123'")
        log.warning("send failed: %s", err)
        try:
            raise ConnectionError("cannot reach postgresql://perpex:pAsSw0rd@db:5432/perpex")
        except ConnectionError:
            log.exception("database down")
    finally:
        log.removeHandler(handler)
    text = stream.getvalue()
    assert "aPiKeY123" not in text and "pAsSw0rd" not in text
    assert "https://rpc.example/***" in text and "postgresql://perpex:***@db:5432/perpex" in text


@pytest.mark.parametrize("value", ["abc", "70000", "-1"])
def test_a_bad_health_port_is_named(monkeypatch: pytest.MonkeyPatch, value: str) -> None:
    monkeypatch.setenv("RPC_URL", "http://127.0.0.1:8545")
    monkeypatch.setenv("HEALTH_PORT", value)
    with pytest.raises(ConfigError, match="HEALTH_PORT"):
        load_settings(BaseServiceSettings)
