"""Where `perpex trade` finds its key, and that no secret reaches its output."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from eth_account import Account

from perpex_cli.trade.wallet import (
    KeySource,
    Scrubber,
    WalletError,
    address_of,
    keystore_address,
    load_key,
)

KEY_A = "0x" + "11" * 32
KEY_B = "0x" + "22" * 32


def _source(**kw: object) -> KeySource:
    base: dict[str, object] = {
        "keystore": None,
        "password_env": "KEYSTORE_PASSWORD",
        "key_env": None,
    }
    base.update(kw)
    return KeySource(**base)  # type: ignore[arg-type]


def test_env_order_trader_key_first() -> None:
    scrub = Scrubber()
    env = {"PRIVATE_KEY": KEY_B, "TRADER_PRIVATE_KEY": KEY_A}
    assert load_key(_source(), scrub, None, env).get_secret_value() == KEY_A
    assert load_key(_source(), scrub, None, {"PRIVATE_KEY": KEY_B}).get_secret_value() == KEY_B
    named = load_key(_source(key_env="MY_KEY"), scrub, None, {"MY_KEY": "22" * 32, **env})
    assert named.get_secret_value() == KEY_B  # 0x added


def test_missing_or_bad_key_messages_never_echo_it() -> None:
    with pytest.raises(WalletError, match="TRADER_PRIVATE_KEY or PRIVATE_KEY"):
        load_key(_source(), Scrubber(), None, {})
    bad = "ab" * 31 + "zz"
    with pytest.raises(WalletError) as err:
        load_key(_source(), Scrubber(), None, {"TRADER_PRIVATE_KEY": bad})
    assert "64 hex digits" in str(err.value) and bad not in str(err.value)


def _keystore(tmp_path: Path, key: str, password: str) -> Path:
    data = Account.encrypt(key, password, kdf="pbkdf2", iterations=2)
    path = tmp_path / "key.json"
    path.write_text(json.dumps(data))
    return path


def test_keystore_with_password_from_env_or_prompt(tmp_path: Path) -> None:
    path = _keystore(tmp_path, KEY_A, "hunter2-pass")
    scrub = Scrubber()
    key = load_key(_source(keystore=path), scrub, None, {"KEYSTORE_PASSWORD": "hunter2-pass"})
    assert key.get_secret_value() == KEY_A
    asked: list[bool] = []

    def prompt() -> str:
        asked.append(True)
        return "hunter2-pass"

    assert load_key(_source(keystore=path), scrub, prompt, {}).get_secret_value() == KEY_A
    assert asked == [True]
    # the keystore declares its address: readable without the password
    assert keystore_address(path) == address_of(key)
    # and the password and key are scrubbed from anything printed
    assert scrub(f"x {KEY_A} y hunter2-pass z {KEY_A[2:].upper()}") == "x *** y *** z ***"


def test_keystore_errors(tmp_path: Path) -> None:
    path = _keystore(tmp_path, KEY_A, "right-password")
    with pytest.raises(WalletError, match="wrong password") as err:
        load_key(_source(keystore=path), Scrubber(), None, {"KEYSTORE_PASSWORD": "wrong-password"})
    assert "wrong-password" not in str(err.value)
    with pytest.raises(WalletError, match="needs its password"):
        load_key(_source(keystore=path), Scrubber(), None, {})
    with pytest.raises(WalletError, match="not found"):
        load_key(_source(keystore=tmp_path / "nope.json"), Scrubber(), None, {})
    junk = tmp_path / "junk.json"
    junk.write_text("{not json")
    with pytest.raises(WalletError, match="not readable JSON"):
        load_key(_source(keystore=junk), Scrubber(), None, {})


def test_scrubber_masks_rpc_url_path() -> None:
    scrub = Scrubber()
    scrub.add_url("https://eth.example.com/v2/SECRETAPIKEY123")
    text = scrub("cannot reach https://eth.example.com/v2/SECRETAPIKEY123 (SECRETAPIKEY123)")
    assert "SECRETAPIKEY123" not in text
    assert "https://eth.example.com/***" in text
    plain = Scrubber()
    plain.add_url("http://127.0.0.1:8545")
    assert plain("http://127.0.0.1:8545") == "http://127.0.0.1:8545"
