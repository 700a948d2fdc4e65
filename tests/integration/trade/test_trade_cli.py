"""`perpex trade` against a deployment on a real anvil: every subcommand, --json parsed, --yes
and the confirmation prompt, keystore files, each bad input refused before anything is sent,
reverts decoded, and the figures it shows checked against the chain."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

from eth_abi import decode
from eth_account import Account
from eth_utils import function_signature_to_4byte_selector
from trade_support import Trading

from perpex_cli.trade.chain import SIG_CLOSE, SIG_OPEN, SIG_REDUCE
from perpex_dev.devstack.accounts import ANVIL_KEYS
from perpex_dev.devstack.market import WAD

ME, OTHER, BOOK = 5, 6, 7


def wad(text: str) -> int:
    return int(Decimal(text) * WAD)


def _input_of(trading: Trading, tx_hash: str) -> bytes:
    return bytes(trading.w3.eth.get_transaction(tx_hash)["input"])  # type: ignore[arg-type]


def _args(sig: str, data: bytes) -> tuple[object, ...]:
    assert data[:4] == function_signature_to_4byte_selector(sig), f"not {sig}"
    types = sig[sig.index("(") + 1 : -1].split(",")
    return tuple(decode(types, data[4:]))


def test_markets_and_quote_need_no_key(trading: Trading) -> None:
    markets = trading.ok("markets")["markets"]
    assert [m["market"] for m in markets] == ["ETH/USDT", "BTC/USDT"]
    eth = markets[0]
    assert eth["max_leverage"] == "20" and eth["min_notional"] == "440"
    assert eth["index_price"] == "2000" and eth["fee_ratio"] == "0.001"

    q = trading.ok("quote", "ETH/USDT", "long", "--collateral", "1000", "--leverage", "5x")
    quote = q["quote"]
    size, entry, fee, impact = trading.market.pm.functions.quoteOpen(
        trading.mid("ETH/USDT"), True, 1000 * WAD, 5 * WAD
    ).call()
    assert (wad(quote["size"]), wad(quote["entry_price"]), wad(quote["fee"])) == (size, entry, fee)
    assert wad(quote["price_impact"]) == impact
    assert wad(quote["price_limit"]) == entry * 101 // 100  # 1 % slippage, the default
    assert wad(quote["max_fee"]) == fee + fee // 100  # 1 % fee tolerance
    assert Decimal("1600") < Decimal(quote["liquidation_price"]) < Decimal("1700")
    assert quote["funding"]["position_per_8h"] == "0"  # no rate set yet

    human = trading.run("quote", "BTC/USDT", "short", "--collateral", "500", "--leverage", "3")
    assert human.code == 0, human.stderr
    for label in ("entry price", "price impact", "fee", "liquidation price", "funding rate"):
        assert label in human.stdout


def test_faucet_open_positions_close(trading: Trading) -> None:
    before = trading.nonce(ME)
    got = trading.ok("faucet", "5000", "--yes", key=ME)
    assert got["free_collateral"] == "5000" and [t["step"] for t in got["txs"]] == [
        "faucet",
        "approve",
        "deposit",
    ]
    assert trading.nonce(ME) == before + 3

    opened = trading.ok(
        "open", "ETH/USDT", "long", "--collateral", "1000", "--leverage", "5", "--yes", key=ME
    )
    token = opened["position"]["token_id"]
    quote = opened["quote"]
    # sent through the 7-argument overload, with the quoted bounds
    args = _args(SIG_OPEN, _input_of(trading, opened["tx"]["hash"]))
    assert args[2:] == (
        1000 * WAD,
        5 * WAD,
        wad(quote["price_limit"]),
        wad(quote["max_fee"]),
        quote["deadline"],
    )
    assert quote["deadline"] >= trading.w3.eth.get_block("latest")["timestamp"] + 299
    pos = trading.market.pm.functions.getPosition(token).call()
    assert pos[4] == wad(opened["position"]["size"]) == wad(quote["size"])

    listed = trading.ok("positions", key=ME)
    assert listed["owner"] == trading.address(ME)
    (row,) = listed["positions"]
    assert row["token_id"] == token and row["side"] == "long" and row["liquidatable"] is False
    assert row["liquidation_price"] == quote["liquidation_price"]
    health = trading.market.pm.functions.getPositionHealth(token).call()
    assert wad(row["margin"]) == health[3] and wad(row["maintenance_margin"]) == health[4]
    # anyone's positions, by address, without a key
    assert (
        trading.ok("positions", "--owner", trading.address(ME))["positions"][0]["token_id"] == token
    )

    closed = trading.ok("close", str(token), "--yes", key=ME)
    args = _args(SIG_CLOSE, _input_of(trading, closed["tx"]["hash"]))
    assert args[0] == token and args[1] == wad(closed["quote"]["price_limit"])
    assert wad(closed["closed"]["payout"]) == wad(closed["quote"]["payout"])
    assert trading.ok("positions", key=ME)["positions"] == []

    out = trading.ok("withdraw", "100", "--yes", key=ME)
    assert (
        wad(out["free_collateral"])
        == wad(closed["closed"]["payout"]) + 5000 * WAD - 1000 * WAD - wad(quote["fee"]) - 100 * WAD
    )
    assert trading.ok("deposit", "100", "--yes", key=ME)["amount"] == "100"


def test_reduce_and_margin(trading: Trading) -> None:
    trading.fund(ME)
    token = trading.open(ME, "ETH/USDT", False, 2000, 5)
    size = trading.market.pm.functions.getPosition(token).call()[4]

    reduced = trading.ok("reduce", str(token), "--percent", "25", "--yes", key=ME)
    args = _args(SIG_REDUCE, _input_of(trading, reduced["tx"]["hash"]))
    assert args[0] == token and args[1] == size // 4
    left = trading.market.pm.functions.getPosition(token).call()
    assert left[4] == size - size // 4 == wad(reduced["reduced"]["remaining"]["size"])
    assert wad(reduced["reduced"]["payout"]) == wad(reduced["quote"]["payout"])

    added = trading.ok("margin", "add", str(token), "250", "--yes", key=ME)
    assert wad(added["position"]["collateral"]) == left[2] + 250 * WAD
    assert Decimal(added["quote"]["liquidation_price_after"]) > Decimal(
        added["quote"]["liquidation_price_before"]
    )  # a short: more margin moves it up
    removed = trading.ok("margin", "remove", str(token), "100", "--yes", key=ME)
    assert wad(removed["position"]["collateral"]) == left[2] + 150 * WAD

    human = trading.run("reduce", str(token), "--size", "0.1", "--yes", key=ME)
    assert human.code == 0 and "reduced #" in human.stdout


def test_bad_inputs_are_refused_before_anything_is_sent(trading: Trading) -> None:
    trading.fund(ME, 3000)
    trading.fund(OTHER)
    mine = trading.open(ME, "ETH/USDT", True, 1000, 2)
    theirs = trading.open(OTHER, "ETH/USDT", True, 1000, 2)
    size = Decimal(trading.market.pm.functions.getPosition(mine).call()[4]) / WAD
    nonce = trading.nonce(ME)
    pm = trading.deployment.contracts.position_manager
    cases = [
        (
            ["open", "ETH/USD", "long", "--collateral", "100", "--leverage", "5"],
            "unknown market 'ETH/USD'; markets: ETH/USDT, BTC/USDT",
        ),
        (
            ["open", "ETH/USDT", "long", "--collateral", "100", "--leverage", "25"],
            "leverage 25x is over ETH/USDT's maximum 20x",
        ),
        (
            ["open", "BTC/USDT", "short", "--collateral", "100", "--leverage", "4"],
            "position notional 400.00 vUSDT (collateral x leverage) is under BTC/USDT's minimum 440.00",
        ),
        (
            ["open", "ETH/USDT", "short", "--collateral", "2500", "--leverage", "2"],
            "not enough free collateral in the Vault: 1,998.00 vUSDT free, this needs 2,505.0000",
        ),
        (["close", str(theirs)], f"position #{theirs} is not yours: it belongs to "),
        (["margin", "add", str(theirs), "10"], f"position #{theirs} is not yours"),
        (["close", "999"], "position #999 does not exist (or is closed)"),
        (
            ["reduce", str(mine), "--size", str(size + 1)],
            f"is not smaller than position #{mine}'s",
        ),
        (["reduce", str(mine), "--percent", "90"], "would be under ETH/USDT's minimum position"),
        (["reduce", str(mine)], "give one of --size or --percent"),
        (["margin", "remove", str(mine), "5000"], "is more than position"),
        (["margin", "add", str(mine), "5000"], "not enough free collateral in the Vault"),
        (
            ["open", "ETH/USDT", "long", "--collateral", "ten", "--leverage", "5"],
            "--collateral must be a number, got 'ten'",
        ),
        (["withdraw", "1000000"], "not enough free collateral"),
        (["faucet", "2000000"], "the faucet gives at most 1,000,000.00 vUSDT per call"),
        (["close", str(mine), "--slippage", "80"], "--slippage must be between 0 and 50%"),
        (["close", str(mine), "--chain-id", "1"], "but the deployment file is for chain 31337"),
        (
            ["close", str(mine), "--position-manager", pm, "--chain-id", "1"],
            "chain id mismatch: the node reports 31337, expected 1",
        ),
        (["close", str(mine), "--position-manager", pm], "set --chain-id or CHAIN_ID"),
    ]
    for args, message in cases:
        run = trading.run(*args, "--yes", key=ME)
        assert run.code == 2, (args, run.stdout, run.stderr)
        assert message in run.stderr, (args, run.stderr)
        assert len(run.stderr.strip().splitlines()) == 1 and "Traceback" not in run.stderr
        as_json = trading.run(*args, "--yes", "--json", key=ME)
        assert as_json.code == 2
        err = as_json.json()["error"]
        assert err["kind"] == "bad_input" and message in err["message"]
    assert trading.nonce(ME) == nonce  # nothing was sent

    no_key = trading.run(
        "open", "ETH/USDT", "long", "--collateral", "500", "--leverage", "2", "--yes"
    )
    assert no_key.code == 2 and "no trading key" in no_key.stderr


def test_reverts_are_decoded_and_nothing_is_sent(trading: Trading) -> None:
    trading.fund(ME)
    token = trading.open(ME, "ETH/USDT", True, 1000, 10)
    nonce = trading.nonce(ME)

    run = trading.run("margin", "remove", str(token), "900", "--yes", "--json", key=ME)
    assert run.code == 1
    err = run.json()["error"]
    assert err["kind"] == "revert"
    assert err["revert"]["name"] == "InsufficientMargin"
    assert set(err["revert"]["args"]) == {"margin", "required"}
    assert "can be removed now" in err["message"]
    assert run.stderr.startswith("error: removeMargin reverts: InsufficientMargin(margin=")

    run = trading.run(
        "open", "ETH/USDT", "long", "--collateral", "500", "--leverage", "2",
        "--price-limit", "1900", "--yes", key=ME,
    )  # fmt: skip
    assert run.code == 1
    assert "SlippageExceeded(price=2000." in run.stderr and "limit=1900)" in run.stderr

    trading.market._transact(
        trading.market.pm.functions.setMarketPaused(trading.mid("ETH/USDT"), True),
        trading.deployment.deployer,
    )
    run = trading.run(
        "open", "ETH/USDT", "short", "--collateral", "500", "--leverage", "2", "--yes", key=ME
    )
    assert run.code == 1 and "MarketIsPaused(marketId=0xf436" in run.stderr
    assert trading.nonce(ME) == nonce  # the simulations caught every one


def test_confirmation_prompt(trading: Trading) -> None:
    trading.fund(ME)
    args = ("open", "ETH/USDT", "long", "--collateral", "500", "--leverage", "2")
    nonce = trading.nonce(ME)
    no = trading.run(*args, key=ME, input="n\n")
    assert no.code == 1 and "not confirmed: nothing sent" in no.stderr
    assert "liquidation price" in no.stdout and "Open this position?" in no.stderr
    closed_stdin = trading.run(*args, key=ME, input="")
    assert closed_stdin.code == 1 and "nothing sent" in closed_stdin.stderr
    assert trading.nonce(ME) == nonce

    yes = trading.run(*args, "--json", key=ME, input="y\n")
    assert yes.code == 0, yes.stderr
    assert yes.json()["position"]["token_id"] >= 1  # stdout: the JSON object alone
    assert "liquidation price" in yes.stderr  # the preview went to stderr


def test_keystore_file(trading: Trading, tmp_path: Path) -> None:
    trading.fund(ME)
    path = tmp_path / "trader.json"
    path.write_text(
        json.dumps(Account.encrypt(ANVIL_KEYS[ME], "correct horse", kdf="pbkdf2", iterations=2))
    )
    args = ("open", "ETH/USDT", "long", "--collateral", "500", "--leverage", "2", "--yes")

    by_env = trading.run(
        *args, "--keystore", str(path), "--json", env={"KEYSTORE_PASSWORD": "correct horse"}
    )
    assert by_env.code == 0, by_env.stderr
    assert by_env.json()["position"]["token_id"] >= 1

    prompted = trading.run(*args, "--keystore", str(path), input="correct horse\n")
    assert prompted.code == 0, prompted.stderr
    assert "password for" in prompted.stderr

    wrong = trading.run(*args, "--keystore", str(path), env={"KEYSTORE_PASSWORD": "battery staple"})
    assert wrong.code == 2 and "wrong password for keystore" in wrong.stderr
    everything = by_env.stdout + by_env.stderr + prompted.stdout + prompted.stderr + wrong.stderr
    assert "correct horse" not in everything and "battery staple" not in everything
    assert ANVIL_KEYS[ME][2:] not in everything

    # positions by the address the keystore declares: no password needed
    listed = trading.ok("positions", "--keystore", str(path))
    assert len(listed["positions"]) == 2


def test_liquidation_price_shown_is_where_the_contract_liquidates(trading: Trading) -> None:
    trading.fund(ME)
    long_ = trading.ok(
        "open", "ETH/USDT", "long", "--collateral", "1000", "--leverage", "10", "--yes", key=ME
    )
    short = trading.ok(
        "open", "BTC/USDT", "short", "--collateral", "1000", "--leverage", "8", "--yes", key=ME
    )
    pm = trading.market.pm.functions
    cases = [("ETH/USDT", long_, True), ("BTC/USDT", short, False)]
    for pair, opened, is_long in cases:
        token, liq = opened["position"]["token_id"], wad(opened["quote"]["liquidation_price"])
        unit = 10**10  # the feed's 8 decimals
        at, beyond_safe = (
            (liq // unit * unit, liq // unit * unit + unit)
            if is_long
            else (
                -(-liq // unit) * unit,
                -(-liq // unit) * unit - unit,
            )
        )
        trading.set_index(pair, beyond_safe)
        assert not pm.isPositionLiquidatable(token).call(), pair
        trading.set_index(pair, at)
        assert pm.isPositionLiquidatable(token).call(), pair


def test_funding_shown_is_what_the_position_pays(trading: Trading) -> None:
    # a book with both sides, the mark pushed above the index, a funding update: longs pay
    trading.fund(BOOK, 200_000)
    trading.open(BOOK, "ETH/USDT", False, 3000, 3)
    trading.open(BOOK, "ETH/USDT", True, 20_000, 5)
    trading.advance(8 * 3600 + 1)
    trading.market.refresh_prices()
    trading.market._transact(
        trading.market.pm.functions.updateFundingRate(trading.mid("ETH/USDT")),
        trading.address(BOOK),
    )
    trading.fund(ME)
    opened = trading.ok(
        "open", "ETH/USDT", "long", "--collateral", "1000", "--leverage", "5", "--yes", key=ME
    )
    funding = opened["quote"]["funding"]
    assert Decimal(funding["rate"]) > 0 and Decimal(funding["per_second"]) > 0
    per_8h = wad(funding["position_per_8h"])
    assert per_8h > 0  # a long pays
    token = opened["position"]["token_id"]
    # right after the open its funding has not accrued on the latest block, so the gas estimate
    # skips settling it; the block that mines the next call settles it (gas headroom)
    now = int(trading.w3.eth.get_block("latest")["timestamp"])
    trading.market.rpc("evm_setNextBlockTimestamp", [now + 5])
    added = trading.ok("margin", "add", str(token), "10", "--yes", key=ME)
    trading.advance(8 * 3600)
    paid = trading.market.pm.functions.pendingFunding(token).call()
    # the book did not change: 8 h of accrual is what was shown (to rounding, +1 s of mining)
    assert abs(paid - per_8h) <= per_8h // 1000, (paid, per_8h)
    row = trading.ok("positions", key=ME)["positions"][0]
    assert wad(row["pending_funding"]) == paid
    # what it owes now moves its liquidation price up from where the margin left it
    assert Decimal(row["liquidation_price"]) > Decimal(added["quote"]["liquidation_price_after"])

    human = trading.run("quote", "ETH/USDT", "short", "--collateral", "800", "--leverage", "3")
    assert "longs pay shorts" in human.stdout and "receives" in human.stdout
