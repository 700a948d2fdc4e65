"""`perpex trade`: quote, open, close, reduce, add / remove margin, list positions and markets,
and get test collateral, against any RPC.

Every subcommand takes the connection options (``--rpc-url`` / RPC_URL, ``--deployment`` /
DEPLOYMENT_FILE or ``--position-manager`` / POSITION_MANAGER_ADDRESS, ``--chain-id`` / CHAIN_ID,
checked against the node) and ``--json``. Commands that send take the key options (the key from
the environment or a keystore file, never from a flag), ``--yes`` and ``--deadline``; trades
take ``--slippage`` (or ``--price-limit``) and ``--fee-tolerance``. Exit codes: 0 ok,
1 failure (one line on stderr, no traceback), 2 bad input (nothing was sent).
"""

from __future__ import annotations

import asyncio
import functools
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click
from eth_utils import is_address, to_checksum_address
from pydantic import SecretStr
from web3.exceptions import Web3RPCError

from perpex_cli.trade import calc
from perpex_cli.trade.chain import (
    ERROR_SOURCES,
    BadInput,
    Chain,
    ChainProblem,
    Connection,
    Market,
    MarketQuote,
    Position,
)
from perpex_cli.trade.view import (
    EXIT_BAD_INPUT,
    EXIT_FAILURE,
    Out,
    amount,
    exact,
    leverage,
    pct,
    signed,
    table,
    tiny,
    when,
)
from perpex_cli.trade.wallet import (
    PASSWORD_ENV,
    KeySource,
    Scrubber,
    WalletError,
    address_of,
    env_key_name,
    keystore_address,
    load_key,
)
from shared.chain.abi import load_abi
from shared.chain.errors import (
    DecodedError,
    InsufficientBalanceError,
    TxMinedRevertedError,
    TxRevertedError,
)
from shared.chain.tx import TxNonceConsumedError, TxTimeoutError

WAD = calc.WAD
DEFAULT_SLIPPAGE = "1"
DEFAULT_FEE_TOLERANCE = "1"
DEFAULT_DEADLINE_S = 300
DEFAULT_FAUCET = "10000"


class Failure(RuntimeError):
    """Something went wrong after the input was accepted (exit 1)."""


class NotConfirmed(Failure):
    pass


class Reverted(Failure):
    def __init__(self, message: str, decoded: DecodedError | None, raw: str | None):
        super().__init__(message)
        self.decoded = decoded
        self.raw = raw


# ==================================================================== options


@dataclass(frozen=True)
class Common:
    conn: Connection
    as_json: bool
    key: KeySource | None = None
    yes: bool = True
    slippage: int = 0
    price_limit: int | None = None
    fee_tolerance: int = 0
    deadline_s: int = DEFAULT_DEADLINE_S


def _connection_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option(
                "--rpc-url",
                envvar="RPC_URL",
                default="http://127.0.0.1:8545",
                show_default="$RPC_URL or http://127.0.0.1:8545",
                help="JSON-RPC endpoint.",
            ),
            click.option(
                "--deployment",
                envvar="DEPLOYMENT_FILE",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="Deployment JSON (`perpex deploy`); default $DEPLOYMENT_FILE, else "
                ".perpex/deployment.json.",
            ),
            click.option(
                "--position-manager",
                envvar="POSITION_MANAGER_ADDRESS",
                default=None,
                help="PositionManager address instead of a deployment file (everything else is "
                "read from it).",
            ),
            click.option(
                "--chain-id",
                envvar="CHAIN_ID",
                type=int,
                default=None,
                help="Expected chain id, checked against the node (default: the deployment's).",
            ),
            click.option("--json", "as_json", is_flag=True, help="One JSON object on stdout."),
        ]
    ):
        f = opt(f)
    return f


def _key_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option(
                "--keystore",
                envvar="PERPEX_KEYSTORE",
                type=click.Path(dir_okay=False, path_type=Path),
                default=None,
                help="Encrypted keystore (V3 JSON) holding the key; password from "
                f"--password-env (${PASSWORD_ENV}) or a prompt.",
            ),
            click.option(
                "--password-env",
                default=PASSWORD_ENV,
                show_default=True,
                help="Variable holding the keystore password.",
            ),
            click.option(
                "--key-env",
                default=None,
                help="Variable holding the private key (default TRADER_PRIVATE_KEY, then "
                "PRIVATE_KEY).",
            ),
        ]
    ):
        f = opt(f)
    return f


def _send_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option("--yes", "-y", is_flag=True, help="Send without asking."),
            click.option(
                "--deadline",
                "deadline_s",
                type=click.IntRange(min=1),
                default=DEFAULT_DEADLINE_S,
                show_default=True,
                help="Seconds after the latest block's time until the trade expires.",
            ),
        ]
    ):
        f = opt(f)
    return f


def _trade_options(f: Callable[..., Any]) -> Callable[..., Any]:
    for opt in reversed(
        [
            click.option(
                "--slippage",
                default=DEFAULT_SLIPPAGE,
                show_default=True,
                help="Percent the price may move against you from the quote.",
            ),
            click.option(
                "--price-limit",
                default=None,
                help="Explicit bound on the average price instead of --slippage: buying (open "
                "long, close short) at most, selling (open short, close long) at least.",
            ),
            click.option(
                "--fee-tolerance",
                default=DEFAULT_FEE_TOLERANCE,
                show_default=True,
                help="Percent over the quoted fee accepted as maxFee.",
            ),
        ]
    ):
        f = opt(f)
    return f


def command(
    *, key: bool = False, send: bool = False, trade: bool = False
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Adds the shared options and turns them into a `Common` first argument."""

    def deco(f: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(f)
        def wrapper(**kw: Any) -> Any:
            as_json = bool(kw.pop("as_json"))
            conn = Connection(
                rpc_url=kw.pop("rpc_url"),
                deployment=kw.pop("deployment"),
                position_manager=kw.pop("position_manager"),
                chain_id=kw.pop("chain_id"),
                from_block=kw.pop("from_block", None),
            )
            source = (
                KeySource(kw.pop("keystore"), kw.pop("password_env"), kw.pop("key_env"))
                if key
                else None
            )
            yes = bool(kw.pop("yes")) if send else True
            deadline_s = int(kw.pop("deadline_s")) if send else DEFAULT_DEADLINE_S
            slippage, limit, tolerance = 0, None, 0
            try:
                if trade:
                    slippage = calc.parse_percent(kw.pop("slippage"), "--slippage", maximum=50)
                    limit_text = kw.pop("price_limit")
                    limit = (
                        calc.parse_amount(limit_text, "--price-limit")
                        if limit_text is not None
                        else None
                    )
                    tolerance = calc.parse_percent(kw.pop("fee_tolerance"), "--fee-tolerance")
            except ValueError as exc:
                Out(as_json).error("bad_input", str(exc))
                sys.exit(EXIT_BAD_INPUT)
            common = Common(conn, as_json, source, yes, slippage, limit, tolerance, deadline_s)
            return f(common, **kw)

        g: Callable[..., Any] = wrapper
        if trade:
            g = _trade_options(g)
        if send:
            g = _send_options(g)
        if key:
            g = _key_options(g)
        return _connection_options(g)

    return deco


def _parsed(fn: Callable[..., int], *args: Any, **kw: Any) -> int:
    """A calc parser whose ValueError becomes BadInput."""
    try:
        return fn(*args, **kw)
    except ValueError as exc:
        raise BadInput(str(exc)) from None


# ==================================================================== running


class Session:
    def __init__(self, common: Common, chain: Chain, scrub: Scrubber, out: Out):
        self.common = common
        self.chain = chain
        self.scrub = scrub
        self.out = out
        self._key: SecretStr | None = None
        self.sent: list[dict[str, str]] = []  # every transaction broadcast, for failure reports

    def key(self) -> SecretStr:
        if self._key is None:
            source = self.common.key
            assert source is not None

            def ask() -> str:
                try:
                    return str(
                        click.prompt(f"password for {source.keystore}", hide_input=True, err=True)
                    )
                except click.Abort:
                    raise WalletError(
                        f"keystore {source.keystore} needs its password: set "
                        f"${source.password_env} or enter it at the prompt"
                    ) from None

            self._key = load_key(source, self.scrub, ask)
        return self._key

    def address(self) -> str:
        return address_of(self.key())

    async def deadline(self) -> int:
        return await self.chain.latest_timestamp() + self.common.deadline_s

    def confirm(self, question: str) -> None:
        if self.common.yes:
            return
        if not click.confirm(question, default=False, err=True):
            raise NotConfirmed("not confirmed: nothing sent")

    async def send(self, tx: dict[str, Any], label: str) -> dict[str, Any]:
        sender = self.chain.sender(self.key())
        try:
            pending = await sender.submit(tx, label)
            self.sent.append({"step": label, "hash": pending.hashes[-1]})
            self.out.progress(f"sent {label}: {pending.hashes[-1]}; waiting for it to be mined")
            receipt = await sender.finish(pending)
        except TxMinedRevertedError as exc:
            raise Failure(
                f"{label} was mined but reverted (tx {exc.tx_hash}, gas used {exc.gas_used})"
            ) from None
        except TxRevertedError as exc:
            decoded = self.chain.decoder.decode_error(exc.data)
            raise Reverted(
                f"{label} reverts: {_describe(decoded) if decoded else exc.reason}",
                decoded,
                exc.data,
            ) from None
        except InsufficientBalanceError as exc:
            raise Failure(f"not enough native token for gas: {exc}") from None
        return receipt


def run(common: Common, name: str, body: Callable[[Session], Awaitable[dict[str, Any]]]) -> None:
    scrub = Scrubber()
    scrub.add_url(common.conn.rpc_url)
    out = Out(common.as_json, common.yes)
    sessions: list[Session] = []

    async def main() -> dict[str, Any]:
        chain = await Chain.connect(common.conn)
        try:
            sessions.append(Session(common, chain, scrub, out))
            return await body(sessions[0])
        finally:
            await chain.close()

    def fail(kind: str, message: str, code: int, extra: dict[str, Any] | None = None) -> None:
        """One line on stderr (and the JSON object); what was already sent, if anything."""
        sent = sessions[0].sent if sessions else []
        body_extra = dict(extra or {})
        if sent:
            body_extra["sent"] = sent
            others = [t for t in sent if t["hash"] not in message]
            if others:
                message += "; already sent: " + ", ".join(
                    f"{t['step']} {t['hash']}" for t in others
                )
        out.error(kind, scrub(message), body_extra)
        sys.exit(code)

    try:
        payload = asyncio.run(main())
    except (BadInput, WalletError) as exc:
        fail("bad_input", str(exc), EXIT_BAD_INPUT)
    except Reverted as exc:
        message = str(exc)
        advice = HINTS.get(exc.decoded.name) if exc.decoded is not None else None
        if advice:
            message += f": {advice}"
        fail("revert", message, EXIT_FAILURE, {"revert": _revert_json(exc.decoded, exc.raw)})
    except NotConfirmed as exc:
        fail("not_confirmed", str(exc), EXIT_FAILURE)
    except click.Abort:
        fail("not_confirmed", "aborted: nothing sent", EXIT_FAILURE)
    except KeyboardInterrupt:
        fail(
            "failure",
            "interrupted (a transaction already broadcast may still be mined)",
            EXIT_FAILURE,
        )
    except (Failure, ChainProblem, TxTimeoutError, TxNonceConsumedError) as exc:
        fail("failure", str(exc), EXIT_FAILURE)
    except Web3RPCError as exc:
        fail("failure", f"RPC error: {exc}", EXIT_FAILURE)
    except Exception as exc:  # no traceback: one line, secrets removed
        fail("failure", f"{type(exc).__name__}: {exc}", EXIT_FAILURE)
    out.result({"command": name, **payload})


# ==================================================================== reverts

# Arguments that are not WAD amounts (shown as they are).
_PLAIN_ARGS = {
    "tokenId",
    "blockNumber",
    "deadline",
    "nextFundingTime",
    "executableAt",
    "updatedAt",
    "maxStaleness",
    "caller",
    "marketId",
    "changeId",
    "account",
    "sender",
    "owner",
    "spender",
    "receiver",
    "feed",
}

HINTS = {
    "SlippageExceeded": "the price moved past your limit; quote again, or allow more with "
    "--slippage",
    "FeeTooHigh": "the trading fee is above the maxFee sent (fee parameters changed?); quote again",
    "DeadlineExpired": "mined after its deadline; send again (or a longer --deadline)",
    "InsufficientMargin": "the position would be left under its initial margin (size x price / "
    "max leverage); remove less",
    "WouldBeLiquidatable": "the position would be liquidatable at once; lower the leverage",
    "NegativeEquity": "its loss and funding exceed its collateral; add margin before closing, "
    "or it waits for a liquidation",
    "MarketRestricted": "a liquidation happened in this market in this block; try again in the "
    "next block",
    "PriceImpactTooHigh": "the trade moves the mark too far; trade less, or close in parts "
    "(perpex trade reduce)",
    "BlockPriceMoveTooHigh": "this block's price budget is used up; try again in the next "
    "block, or trade less",
    "MarketIsPaused": "the market is paused: opening and removing margin are refused (closing "
    "and adding margin still work)",
    "UtilizationExceeded": "the pool's exposure limit is reached; trade less or wait",
    "InsufficientFreeCollateral": "not enough free collateral in the Vault; perpex trade "
    "deposit (or faucet on a test chain)",
    "StalePrice": "the oracle's price is stale",
    "FaucetLimitExceeded": "ask for less per call",
    "FaucetDisabled": "this chain's collateral token has no faucet",
}


def _arg_names() -> dict[str, list[str]]:
    names: dict[str, list[str]] = {}
    for contract in ERROR_SOURCES:
        for item in load_abi(contract):
            if item.get("type") == "error":
                names.setdefault(item["name"], [i["name"] for i in item.get("inputs", [])])
    return names


@functools.cache
def _error_args() -> dict[str, list[str]]:
    return _arg_names()


def _describe(decoded: DecodedError) -> str:
    """Name(arg=value, ...): amounts as token units, the rest as they are."""
    if decoded.message or decoded.name == "Panic":
        return str(decoded)
    names = _error_args().get(decoded.name, [])
    parts = []
    for i, value in enumerate(decoded.args):
        arg = names[i] if i < len(names) and names[i] else f"arg{i}"
        if isinstance(value, int) and not isinstance(value, bool) and arg not in _PLAIN_ARGS:
            shown = calc.fmt_wad(value)
        elif isinstance(value, bytes):
            shown = "0x" + value.hex()
        else:
            shown = str(value)
        parts.append(f"{arg}={shown}")
    return f"{decoded.name}({', '.join(parts)})"


def _revert_json(decoded: DecodedError | None, raw: str | None) -> dict[str, Any]:
    if decoded is None:
        return {"name": None, "args": {}, "data": raw}
    names = _error_args().get(decoded.name, [])
    args: dict[str, Any] = {}
    for i, value in enumerate(decoded.args):
        arg = names[i] if i < len(names) and names[i] else f"arg{i}"
        if isinstance(value, bytes):
            args[arg] = "0x" + value.hex()
        elif isinstance(value, bool) or not isinstance(value, int):
            args[arg] = value if isinstance(value, (bool, str)) else str(value)
        else:
            args[arg] = str(value)
    return {"name": decoded.name, "args": args, "data": raw}


# ==================================================================== shared views


def _side(is_long: bool) -> str:
    return "long" if is_long else "short"


def _funding(
    market: Market, st: MarketQuote, is_long: bool, size: int, long_size: int, short_size: int
) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """The market's funding now and what a position of `size` on its side pays (positive) or
    receives per second and per 8 h at the book (long_size, short_size), position included."""
    per_s = calc.funding_per_second(is_long, size, st.funding_per_second, long_size, short_size)
    per_8h = calc.funding_over(per_s)
    hours = market.funding_interval / 3600
    interval = f"{hours:g}h"
    if st.funding_per_second > 0:
        payer = "longs pay shorts"
    elif st.funding_per_second < 0:
        payer = "shorts pay longs"
    else:
        payer = "nothing accrues"
    if per_s > 0:
        mine = f"pays {amount(per_8h, 6)} {_quote(market)} per 8h ({tiny(per_s)} / s)"
    elif per_s < 0:
        mine = f"receives {amount(-per_8h, 6)} {_quote(market)} per 8h ({tiny(-per_s)} / s)"
    elif st.funding_per_second != 0 and (long_size == 0 or short_size == 0):
        mine = "nothing while the other side is empty"
    else:
        mine = "nothing: no funding accrues at the current rate"
    rows = [
        (
            "funding rate",
            f"{pct(st.funding_rate)} per {interval} ({payer}); next update "
            f"{when(st.next_funding_time, st.timestamp)}",
        ),
        (
            "funding accrual",
            f"{tiny(abs(st.funding_per_second))} {_quote(market)} per {market.base} per second "
            f"(the paying side's rate when the book is balanced; zero-sum)",
        ),
        ("this position", mine if per_s == 0 else f"{mine} at the current book"),
    ]
    data = {
        "rate": exact(st.funding_rate),
        "interval_s": market.funding_interval,
        "per_second": exact(st.funding_per_second),
        "next_update": st.next_funding_time,
        "position_per_second": exact(per_s),
        "position_per_8h": exact(per_8h),
        "long_size": exact(long_size),
        "short_size": exact(short_size),
    }
    return data, rows


def _quote(market: Market) -> str:
    quote = market.pair.split("/")[-1]
    return "v" + quote if not quote.startswith("v") else quote


def _liq_text(price: int | None) -> str:
    return "none (cannot be liquidated by the price alone)" if price is None else amount(price)


def _opt_exact(value: int | None) -> str | None:
    return None if value is None else exact(value)


def _market_json(m: Market) -> dict[str, Any]:
    return {
        "market": m.pair,
        "market_id": m.market_id_hex,
        "vamm": m.vamm,
        "max_leverage": exact(m.max_leverage),
        "maintenance_margin_ratio": exact(m.mmr),
        "liquidation_fee_ratio": exact(m.liquidation_fee_ratio),
        "min_notional": exact(m.min_notional),
        "fee_ratio": exact(m.fee_ratio),
        "max_price_impact": exact(m.max_price_impact),
        "max_price_move_per_block": exact(m.max_move_per_block),
        "max_spread": exact(m.max_spread),
        "max_funding_rate": exact(m.max_funding_rate),
        "funding_interval_s": m.funding_interval,
        "paused": m.paused,
    }


def _require_oracle(market: Market, st: MarketQuote) -> None:
    if st.index == 0:
        raise Failure(
            f"the oracle of {market.pair} cannot answer (stale or invalid price): trades wait "
            "for it"
        )


async def _owned(s: Session, token_id: int) -> tuple[Position, Market]:
    pos = await s.chain.position(token_id)
    if pos is None:
        raise BadInput(f"position #{token_id} does not exist (or is closed)")
    me = s.address()
    if pos.owner != me:
        raise BadInput(
            f"position #{token_id} is not yours: it belongs to {pos.owner}, you are {me}"
        )
    return pos, s.chain.market_by_id(pos.market_id)


def _bound(s: Session, buying: bool, price: int) -> int:
    if s.common.price_limit is not None:
        return s.common.price_limit
    return calc.price_limit(buying, price, s.common.slippage)


def _tx_json(receipt: dict[str, Any]) -> dict[str, Any]:
    h = receipt["transactionHash"]
    return {
        "hash": h.to_0x_hex() if hasattr(h, "to_0x_hex") else str(h),
        "block": int(receipt["blockNumber"]),
        "gas_used": int(receipt["gasUsed"]),
    }


# ==================================================================== the group


@click.group("trade")
def trade() -> None:
    """Trade on Perp-EX from the command line: quote, open, close, reduce, margin, positions,
    markets, faucet, deposit, withdraw.

    \b
    Key: $TRADER_PRIVATE_KEY (else $PRIVATE_KEY, or --key-env NAME), or --keystore PATH with
    the password from $KEYSTORE_PASSWORD (--password-env NAME) or a prompt; never a flag.
    Exit codes: 0 ok, 1 failure, 2 bad input (nothing sent).
    """


# -------------------------------------------------------------------- markets


@trade.command("markets")
@command()
def markets_cmd(common: Common) -> None:
    """Markets with prices, limits and funding."""

    async def body(s: Session) -> dict[str, Any]:
        rows = []
        lines = []
        for m in s.chain.markets.values():
            st = await s.chain.state(m)
            data, _ = _funding(m, st, True, 0, st.long_size, st.short_size)
            for k in ("position_per_second", "position_per_8h"):
                data.pop(k)
            spread = (abs(st.mark - st.index) * WAD // st.index) if st.index else None
            rows.append(
                {
                    **_market_json(m),
                    "index_price": exact(st.index) if st.index else None,
                    "mark_price": exact(st.mark),
                    "spread": _opt_exact(spread),
                    "funding": data,
                }
            )
            lines.append(f"{m.pair}  ({m.market_id_hex})")
            lines.extend(
                table(
                    [
                        (
                            "index / mark",
                            f"{amount(st.index) if st.index else 'oracle down'} / "
                            f"{amount(st.mark)}"
                            + (f"  (spread {pct(spread)})" if spread is not None else ""),
                        ),
                        (
                            "limits",
                            f"max leverage {leverage(m.max_leverage)}, min position "
                            f"{amount(m.min_notional, 2)} {_quote(m)}, maintenance "
                            f"{pct(m.mmr, 2)}, fee {pct(m.fee_ratio, 2)}, max move "
                            f"{pct(m.max_price_impact, 2)} per trade / "
                            f"{pct(m.max_move_per_block, 2)} per block",
                        ),
                        (
                            "open size",
                            f"long {amount(st.long_size)} {m.base}, short "
                            f"{amount(st.short_size)} {m.base}",
                        ),
                        (
                            "funding",
                            f"{pct(st.funding_rate)} per {m.funding_interval / 3600:g}h "
                            f"({tiny(st.funding_per_second)} per {m.base} per second); "
                            f"next {when(st.next_funding_time, st.timestamp)}",
                        ),
                        ("status", "PAUSED" if m.paused else "trading"),
                    ]
                )
            )
        s.out.preview(lines)
        return {"chain_id": s.chain.chain_id, "markets": rows}

    run(common, "markets", body)


# -------------------------------------------------------------------- quote / open


@dataclass
class OpenPlan:
    market: Market
    is_long: bool
    collateral: int
    leverage: int
    notional: int
    size: int
    entry: int
    fee: int
    impact: int
    limit: int
    fee_cap: int
    data: dict[str, Any]
    title: str
    rows: list[tuple[str, str]]

    def lines(self) -> list[str]:
        return [self.title, *table(self.rows)]


async def _plan_open(
    s: Session, market_name: str, side: str, collateral_text: str, leverage_text: str
) -> OpenPlan:
    collateral = _parsed(calc.parse_amount, collateral_text, "--collateral")
    lev = _parsed(calc.parse_leverage, leverage_text)
    is_long = side.lower() == "long"
    m = s.chain.market(market_name)
    if lev > m.max_leverage:
        raise BadInput(
            f"leverage {leverage(lev)} is over {m.pair}'s maximum {leverage(m.max_leverage)}"
        )
    notional = calc.open_notional(collateral, lev)
    if notional < m.min_notional:
        raise BadInput(
            f"position notional {amount(notional, 2)} {_quote(m)} (collateral x leverage) is under "
            f"{m.pair}'s minimum {amount(m.min_notional, 2)} {_quote(m)}"
        )
    st = await s.chain.state(m)
    _require_oracle(m, st)
    size, entry, fee, impact = await s.chain.quote_open(m, is_long, collateral, lev)
    if impact > m.max_price_impact:
        raise BadInput(
            f"the trade would move {m.pair}'s mark by {pct(impact, 2)}, over the "
            f"{pct(m.max_price_impact, 2)} per-trade limit; open less"
        )
    failing = calc.would_be_liquidatable(
        is_long, collateral, size, notional, st.index, st.mark, m.mmr, m.max_spread
    )
    if failing is not None:
        raise BadInput(
            f"the position would be liquidatable at once (margin {amount(failing[0])} < "
            f"maintenance {amount(failing[1])} at the "
            f"{'mark' if calc.diverged(st.mark, st.index, m.max_spread) else 'index'} price); "
            "lower the leverage"
        )
    cum = st.cumulative(is_long)
    liq = calc.liquidation_price(is_long, collateral, size, notional, cum, cum, m.mmr)
    limit = _bound(s, is_long, entry)
    fee_cap = calc.max_fee(fee, s.common.fee_tolerance)
    long_after, short_after = calc.book_with(is_long, size, st.long_size, st.short_size)
    funding, funding_rows = _funding(m, st, is_long, size, long_after, short_after)
    data = {
        "market": m.pair,
        "side": _side(is_long),
        "collateral": exact(collateral),
        "leverage": exact(lev),
        "notional": exact(notional),
        "size": exact(size),
        "entry_price": exact(entry),
        "mark_price": exact(st.mark),
        "index_price": exact(st.index),
        "price_impact": exact(impact),
        "fee": exact(fee),
        "max_fee": exact(fee_cap),
        "price_limit": exact(limit),
        "slippage": exact(s.common.slippage) if s.common.price_limit is None else None,
        "liquidation_price": _opt_exact(liq),
        "maintenance_margin_ratio": exact(m.mmr),
        "funding": funding,
    }
    q = _quote(m)
    rows = [
        ("collateral", f"{amount(collateral, 2)} {q} (+ fee {amount(fee)} from free collateral)"),
        ("leverage", f"{leverage(lev)}  (notional {amount(notional, 2)} {q})"),
        ("size", f"{amount(size, 6)} {m.base}"),
        (
            "entry price",
            f"{amount(entry)}  (mark {amount(st.mark)}, index {amount(st.index)})",
        ),
        ("price impact", f"{pct(impact)}  (limit {pct(m.max_price_impact, 2)} per trade)"),
        ("fee", f"{amount(fee)} {q}  (maxFee sent {amount(fee_cap)})"),
        (
            "price limit",
            f"{amount(limit)}  "
            + (
                f"({'at most' if is_long else 'at least'}: {pct(s.common.slippage, 2)} slippage)"
                if s.common.price_limit is None
                else "(--price-limit)"
            ),
        ),
        (
            "liquidation price",
            f"{_liq_text(liq)}  (index price; maintenance margin {pct(m.mmr, 2)})",
        ),
        *funding_rows,
    ]
    return OpenPlan(
        m,
        is_long,
        collateral,
        lev,
        notional,
        size,
        entry,
        fee,
        impact,
        limit,
        fee_cap,
        data,
        f"Open {_side(is_long)} {m.pair}",
        rows,
    )


_SIDE = click.Choice(["long", "short"], case_sensitive=False)


@trade.command("quote")
@click.argument("market")
@click.argument("side", type=_SIDE)
@click.option("--collateral", required=True, help="Margin to put up, in vUSDT.")
@click.option("--leverage", "leverage_", required=True, help="e.g. 5 or 5x.")
@command(trade=True)
def quote_cmd(common: Common, market: str, side: str, collateral: str, leverage_: str) -> None:
    """Quote opening a position: size, entry price, impact, fee, liquidation price, funding.
    Needs no key; sends nothing."""

    async def body(s: Session) -> dict[str, Any]:
        plan = await _plan_open(s, market, side, collateral, leverage_)
        plan.title = f"Quote: open {_side(plan.is_long)} {plan.market.pair}"
        s.out.preview(plan.lines())
        return {"quote": plan.data}

    run(common, "quote", body)


@trade.command("open")
@click.argument("market")
@click.argument("side", type=_SIDE)
@click.option("--collateral", required=True, help="Margin to put up, in vUSDT.")
@click.option("--leverage", "leverage_", required=True, help="e.g. 5 or 5x.")
@command(key=True, send=True, trade=True)
def open_cmd(common: Common, market: str, side: str, collateral: str, leverage_: str) -> None:
    """Open a position (openPosition with maxFee and deadline)."""

    async def body(s: Session) -> dict[str, Any]:
        plan = await _plan_open(s, market, side, collateral, leverage_)
        me = s.address()
        free = await s.chain.free_collateral(me)
        need = plan.collateral + plan.fee
        q = _quote(plan.market)
        if free < need:
            wallet = await s.chain.token_balance(me)
            extra = (
                f"; your wallet holds {amount(wallet, 2)} {q}: perpex trade deposit"
                if wallet
                else ""
            )
            raise BadInput(
                f"not enough free collateral in the Vault: {amount(free, 2)} {q} free, this "
                f"needs {amount(need, 4)} ({amount(plan.collateral, 2)} collateral + "
                f"{amount(plan.fee)} fee){extra}"
            )
        plan.data["free_collateral"] = exact(free)
        plan.rows += [
            ("account", me),
            ("free collateral", f"{amount(free, 2)} -> {amount(free - need, 2)} {q}"),
        ]
        s.out.preview(plan.lines())
        s.confirm("Open this position?")
        deadline = await s.deadline()
        tx = s.chain.encode_open(
            plan.market,
            plan.is_long,
            plan.collateral,
            plan.leverage,
            plan.limit,
            plan.fee_cap,
            deadline,
        )
        receipt = await s.send(tx, "openPosition")
        ev = s.chain.events(receipt, s.chain.pm, "PositionOpened")[-1]
        position = {
            "token_id": int(ev["tokenId"]),
            "size": exact(int(ev["size"])),
            "notional": exact(int(ev["notional"])),
            "collateral": exact(int(ev["collateral"])),
            "entry_price": exact(int(ev["entryPrice"])),
            "fee": exact(int(ev["fee"])),
        }
        s.out.line(
            f"opened position #{position['token_id']}: {amount(int(ev['size']), 6)} "
            f"{plan.market.base} at {amount(int(ev['entryPrice']))}, fee {amount(int(ev['fee']))} "
            f"(tx {_tx_json(receipt)['hash']})"
        )
        return {
            "quote": {**plan.data, "deadline": deadline},
            "tx": _tx_json(receipt),
            "position": position,
        }

    run(common, "open", body)


# -------------------------------------------------------------------- close / reduce


@trade.command("close")
@click.argument("token_id", type=click.IntRange(min=1))
@command(key=True, send=True, trade=True)
def close_cmd(common: Common, token_id: int) -> None:
    """Close a position of yours (closePosition with maxFee and deadline)."""

    async def body(s: Session) -> dict[str, Any]:
        pos, m = await _owned(s, token_id)
        st = await s.chain.state(m)
        exit_quote, exit_price, fee, impact = await s.chain.quote_close_part(
            m, pos.is_long, pos.size
        )
        funding = await s.chain.pending_funding(token_id)
        pnl = exit_quote - pos.notional if pos.is_long else pos.notional - exit_quote
        settle = calc.close_settlement(pos.collateral, pnl, funding, fee)
        limit = _bound(s, not pos.is_long, exit_price)
        fee_cap = calc.max_fee(fee, s.common.slippage + s.common.fee_tolerance)
        q = _quote(m)
        data = {
            "token_id": token_id,
            "market": m.pair,
            "side": _side(pos.is_long),
            "size": exact(pos.size),
            "entry_price": exact(pos.entry_price),
            "exit_price": exact(exit_price),
            "mark_price": exact(st.mark),
            "index_price": exact(st.index),
            "price_impact": exact(impact),
            "realized_pnl": exact(pnl),
            "funding": exact(funding),
            "fee": exact(settle.fee),
            "max_fee": exact(fee_cap),
            "price_limit": exact(limit),
            "equity": exact(settle.equity),
            "payout": exact(settle.payout),
        }
        rows = [
            ("size", f"{amount(pos.size, 6)} {m.base}  (entry {amount(pos.entry_price)})"),
            (
                "exit price",
                f"{amount(exit_price)}  (mark {amount(st.mark)}, index {amount(st.index)})",
            ),
            ("price impact", pct(impact)),
            ("realized PnL", f"{signed(pnl)} {q}"),
            ("funding", f"{'pays' if funding >= 0 else 'receives'} {amount(abs(funding))} {q}"),
            ("fee", f"{amount(fee)} {q}  (maxFee sent {amount(fee_cap)})"),
            (
                "price limit",
                f"{amount(limit)}  ({'at least' if pos.is_long else 'at most'})",
            ),
            ("payout", f"{amount(settle.payout)} {q} to free collateral"),
        ]
        if settle.equity < 0:
            rows.append(
                (
                    "WARNING",
                    f"equity {amount(settle.equity)} is negative: the contract refuses this close",
                )
            )
        s.out.preview([f"Close #{token_id} {_side(pos.is_long)} {m.pair}", *table(rows)])
        s.confirm("Close this position?")
        deadline = await s.deadline()
        receipt = await s.send(
            s.chain.encode_close(token_id, limit, fee_cap, deadline), "closePosition"
        )
        ev = s.chain.events(receipt, s.chain.pm, "PositionClosed")[-1]
        result = {
            "exit_price": exact(int(ev["exitPrice"])),
            "realized_pnl": exact(int(ev["realizedPnl"])),
            "funding": exact(int(ev["fundingPayment"])),
            "payout": exact(int(ev["payout"])),
            "fee": exact(int(ev["fee"])),
        }
        s.out.line(
            f"closed #{token_id} at {amount(int(ev['exitPrice']))}: PnL "
            f"{signed(int(ev['realizedPnl']))}, payout {amount(int(ev['payout']))} {q} "
            f"(tx {_tx_json(receipt)['hash']})"
        )
        return {"quote": {**data, "deadline": deadline}, "tx": _tx_json(receipt), "closed": result}

    run(common, "close", body)


@trade.command("reduce")
@click.argument("token_id", type=click.IntRange(min=1))
@click.option("--size", "size_text", default=None, help="Base size to close (e.g. 0.5 ETH).")
@click.option("--percent", "percent_text", default=None, help="Part of the position to close.")
@command(key=True, send=True, trade=True)
def reduce_cmd(
    common: Common, token_id: int, size_text: str | None, percent_text: str | None
) -> None:
    """Close part of a position of yours (reducePosition)."""

    async def body(s: Session) -> dict[str, Any]:
        if (size_text is None) == (percent_text is None):
            raise BadInput("give one of --size or --percent")
        part_size = (
            _parsed(calc.parse_amount, size_text, "--size") if size_text is not None else None
        )
        part_pct = (
            _parsed(calc.parse_percent, percent_text, "--percent")
            if percent_text is not None
            else None
        )
        pos, m = await _owned(s, token_id)
        if part_pct is not None:
            if part_pct >= WAD:
                raise BadInput("--percent 100 closes the whole position: use perpex trade close")
            part_size = pos.size * part_pct // WAD
            if part_size == 0:
                raise BadInput("--percent is too small: it closes nothing")
        assert part_size is not None
        if part_size >= pos.size:
            raise BadInput(
                f"size {amount(part_size, 6)} {m.base} is not smaller than position "
                f"#{token_id}'s {amount(pos.size, 6)} {m.base}; to close all of it: perpex "
                "trade close"
            )
        st = await s.chain.state(m)
        exit_quote, exit_price, fee, impact = await s.chain.quote_close_part(
            m, pos.is_long, part_size
        )
        funding = await s.chain.pending_funding(token_id)
        r = calc.reduce_settlement(
            pos.is_long, pos.collateral, pos.size, pos.notional, funding, part_size, exit_quote, fee
        )
        q = _quote(m)
        if r.rest_notional < m.min_notional:
            raise BadInput(
                f"what is left ({amount(r.rest_notional, 2)} {q} notional) would be under "
                f"{m.pair}'s minimum position {amount(m.min_notional, 2)} {q}; reduce less or "
                "close"
            )
        if st.index:
            failing = calc.would_be_liquidatable(
                pos.is_long,
                r.rest_collateral,
                r.rest_size,
                r.rest_notional,
                st.index,
                st.mark,
                m.mmr,
                m.max_spread,
            )
            if failing is not None:
                raise BadInput(
                    f"what is left would be liquidatable (margin {amount(failing[0])} < "
                    f"maintenance {amount(failing[1])}); reduce less, or add margin first"
                )
        cum = st.cumulative(pos.is_long)
        liq = calc.liquidation_price(
            pos.is_long, r.rest_collateral, r.rest_size, r.rest_notional, cum, cum, m.mmr
        )
        limit = _bound(s, not pos.is_long, exit_price)
        fee_cap = calc.max_fee(fee, s.common.slippage + s.common.fee_tolerance)
        data = {
            "token_id": token_id,
            "market": m.pair,
            "side": _side(pos.is_long),
            "size": exact(part_size),
            "exit_price": exact(exit_price),
            "mark_price": exact(st.mark),
            "index_price": exact(st.index),
            "price_impact": exact(impact),
            "realized_pnl": exact(r.realized_pnl),
            "funding": exact(funding),
            "fee": exact(r.fee),
            "max_fee": exact(fee_cap),
            "price_limit": exact(limit),
            "payout": exact(r.payout),
            "remaining": {
                "size": exact(r.rest_size),
                "notional": exact(r.rest_notional),
                "collateral": exact(r.rest_collateral),
                "liquidation_price": _opt_exact(liq),
            },
        }
        rows = [
            (
                "close",
                f"{amount(part_size, 6)} of {amount(pos.size, 6)} {m.base}  "
                f"(entry {amount(pos.entry_price)})",
            ),
            (
                "exit price",
                f"{amount(exit_price)}  (mark {amount(st.mark)}, index {amount(st.index)})",
            ),
            ("price impact", pct(impact)),
            ("realized PnL", f"{signed(r.realized_pnl)} {q} on the part closed"),
            (
                "funding",
                f"{'pays' if funding >= 0 else 'receives'} {amount(abs(funding))} {q} (whole position, settled)",
            ),
            ("fee", f"{amount(fee)} {q}  (maxFee sent {amount(fee_cap)})"),
            ("price limit", f"{amount(limit)}  ({'at least' if pos.is_long else 'at most'})"),
            ("payout", f"{amount(r.payout)} {q} to free collateral"),
            (
                "left open",
                f"{amount(r.rest_size, 6)} {m.base}, collateral {amount(r.rest_collateral, 2)} {q}, "
                f"liquidation price {_liq_text(liq)}",
            ),
        ]
        s.out.preview([f"Reduce #{token_id} {_side(pos.is_long)} {m.pair}", *table(rows)])
        s.confirm("Reduce this position?")
        deadline = await s.deadline()
        receipt = await s.send(
            s.chain.encode_reduce(token_id, part_size, limit, fee_cap, deadline), "reducePosition"
        )
        dec = s.chain.events(receipt, s.chain.pm, "PositionDecreased")[-1]
        red = s.chain.events(receipt, s.chain.pm, "PositionReduced")[-1]
        result = {
            "size": exact(int(dec["size"])),
            "exit_price": exact(int(dec["exitPrice"])),
            "realized_pnl": exact(int(dec["realizedPnl"])),
            "funding": exact(int(dec["fundingPayment"])),
            "payout": exact(int(dec["payout"])),
            "fee": exact(int(dec["fee"])),
            "remaining": {
                "size": exact(int(red["size"])),
                "notional": exact(int(red["notional"])),
                "collateral": exact(int(red["collateral"])),
            },
        }
        s.out.line(
            f"reduced #{token_id} by {amount(int(dec['size']), 6)} {m.base} at "
            f"{amount(int(dec['exitPrice']))}: payout {amount(int(dec['payout']))} {q}; "
            f"{amount(int(red['size']), 6)} {m.base} left (tx {_tx_json(receipt)['hash']})"
        )
        return {"quote": {**data, "deadline": deadline}, "tx": _tx_json(receipt), "reduced": result}

    run(common, "reduce", body)


# -------------------------------------------------------------------- margin


@trade.group("margin")
def margin() -> None:
    """Add margin to or remove margin from a position of yours."""


async def _margin(s: Session, add: bool, token_id: int, amount_text: str) -> dict[str, Any]:
    value = _parsed(calc.parse_amount, amount_text, "amount")
    pos, m = await _owned(s, token_id)
    q = _quote(m)
    me = s.address()
    st = await s.chain.state(m)
    funding = await s.chain.pending_funding(token_id)
    max_out = calc.max_removable_margin(
        pos.is_long,
        pos.collateral,
        pos.size,
        pos.notional,
        funding,
        st.index,
        st.mark,
        m.max_leverage,
        m.max_spread,
    )
    free = await s.chain.free_collateral(me)
    if add:
        if value > free:
            raise BadInput(
                f"not enough free collateral in the Vault: {amount(free, 2)} {q} free, adding "
                f"needs {amount(value, 2)}"
            )
        after = pos.collateral + value - funding
    else:
        if value > pos.collateral:
            raise BadInput(
                f"amount {amount(value, 2)} {q} is more than position #{token_id}'s collateral "
                f"{amount(pos.collateral, 2)} {q}"
            )
        after = pos.collateral - funding - value
    cum = st.cumulative(pos.is_long)
    liq_before = calc.liquidation_price(
        pos.is_long, pos.collateral, pos.size, pos.notional, pos.entry_funding_index, cum, m.mmr
    )
    liq_after = (
        calc.liquidation_price(pos.is_long, after, pos.size, pos.notional, cum, cum, m.mmr)
        if after > 0
        else None
    )
    verb = "Add" if add else "Remove"
    rows = [
        ("position", f"#{token_id} {_side(pos.is_long)} {amount(pos.size, 6)} {m.base} {m.pair}"),
        (
            "collateral",
            f"{amount(pos.collateral, 4)} -> {amount(after, 4)} {q}"
            + (
                f" (pending funding {'paid' if funding > 0 else 'received'}: {tiny(abs(funding))})"
                if funding
                else ""
            ),
        ),
        ("liquidation price", f"{_liq_text(liq_before)} -> {_liq_text(liq_after)}"),
        (
            "free collateral",
            f"{amount(free, 2)} -> {amount(free - value if add else free + value, 2)} {q}",
        ),
    ]
    if not add:
        rows.append(("removable now", f"at most {amount(max_out, 4)} {q}"))
        if value > max_out:
            rows.append(
                (
                    "WARNING",
                    "more than is removable now: the contract will refuse it (InsufficientMargin)",
                )
            )
    data = {
        "token_id": token_id,
        "market": m.pair,
        "amount": exact(value),
        "collateral_before": exact(pos.collateral),
        "collateral_after": exact(after),
        "pending_funding": exact(funding),
        "liquidation_price_before": _opt_exact(liq_before),
        "liquidation_price_after": _opt_exact(liq_after),
        "max_removable": exact(max_out),
        "free_collateral": exact(free),
    }
    s.out.preview([f"{verb} margin {amount(value, 2)} {q}", *table(rows)])
    s.confirm(f"{verb} this margin?")
    try:
        receipt = await s.send(
            s.chain.encode_margin(add, token_id, value), "addMargin" if add else "removeMargin"
        )
    except Reverted as exc:
        if exc.decoded is not None and exc.decoded.name == "InsufficientMargin":
            raise Reverted(
                f"{exc} (at most {amount(max_out, 4)} {q} can be removed now)", exc.decoded, exc.raw
            ) from None
        raise
    changes = s.chain.events(receipt, s.chain.pm, "MarginChanged")
    new_collateral = int(changes[-1]["newCollateral"]) if changes else after
    s.out.line(
        f"{'added' if add else 'removed'} {amount(value, 2)} {q}: position #{token_id} "
        f"collateral {amount(new_collateral, 4)} {q} (tx {_tx_json(receipt)['hash']})"
    )
    return {
        "quote": data,
        "tx": _tx_json(receipt),
        "position": {"token_id": token_id, "collateral": exact(new_collateral)},
    }


@margin.command("add")
@click.argument("token_id", type=click.IntRange(min=1))
@click.argument("amount_text", metavar="AMOUNT")
@command(key=True, send=True)
def margin_add(common: Common, token_id: int, amount_text: str) -> None:
    """Move AMOUNT vUSDT of free collateral into position TOKEN_ID."""

    async def body(s: Session) -> dict[str, Any]:
        return await _margin(s, True, token_id, amount_text)

    run(common, "margin add", body)


@margin.command("remove")
@click.argument("token_id", type=click.IntRange(min=1))
@click.argument("amount_text", metavar="AMOUNT")
@command(key=True, send=True)
def margin_remove(common: Common, token_id: int, amount_text: str) -> None:
    """Take AMOUNT vUSDT of margin out of position TOKEN_ID (to free collateral)."""

    async def body(s: Session) -> dict[str, Any]:
        return await _margin(s, False, token_id, amount_text)

    run(common, "margin remove", body)


# -------------------------------------------------------------------- positions


async def _position_view(s: Session, pos: Position) -> tuple[dict[str, Any], list[str]]:
    m = s.chain.market_by_id(pos.market_id)
    q = _quote(m)
    st = await s.chain.state(m)
    funding = await s.chain.pending_funding(pos.token_id)
    liquidatable, margin_, mm, index = await s.chain.health(pos.token_id)
    cum = st.cumulative(pos.is_long)
    liq = calc.liquidation_price(
        pos.is_long, pos.collateral, pos.size, pos.notional, pos.entry_funding_index, cum, m.mmr
    )
    pnl = calc.unrealized_pnl(pos.is_long, pos.size, pos.notional, index) if index else None
    try:
        exit_quote, exit_price, fee, _impact = await s.chain.quote_close_part(
            m, pos.is_long, pos.size
        )
        close_pnl = exit_quote - pos.notional if pos.is_long else pos.notional - exit_quote
        settle: calc.ClosePreview | None = calc.close_settlement(
            pos.collateral, close_pnl, funding, fee
        )
    except Exception:  # the vAMM cannot quote it (a short larger than the pool)
        exit_price, settle = 0, None
    per_s = calc.funding_per_second(
        pos.is_long, pos.size, st.funding_per_second, st.long_size, st.short_size
    )
    ratio = calc.margin_ratio(margin_, mm)
    data = {
        "token_id": pos.token_id,
        "market": m.pair,
        "side": _side(pos.is_long),
        "size": exact(pos.size),
        "notional": exact(pos.notional),
        "collateral": exact(pos.collateral),
        "leverage": exact(pos.leverage),
        "entry_price": exact(pos.entry_price),
        "mark_price": exact(st.mark),
        "index_price": exact(index) if index else None,
        "unrealized_pnl": _opt_exact(pnl),
        "pending_funding": exact(funding),
        "margin": exact(margin_),
        "maintenance_margin": exact(mm),
        "margin_ratio": None if ratio is None else f"{ratio:.6f}",
        "liquidatable": liquidatable,
        "liquidation_price": _opt_exact(liq),
        "close_estimate": None
        if settle is None
        else {
            "exit_price": exact(exit_price),
            "payout": exact(settle.payout),
            "equity": exact(settle.equity),
        },
        "funding_per_second": exact(per_s),
        "funding_per_8h": exact(calc.funding_over(per_s)),
        "opened_at": pos.opened_at,
        "opened_block": pos.opened_block,
    }
    rows = [
        (
            "size",
            f"{amount(pos.size, 6)} {m.base}, notional {amount(pos.notional, 2)} {q}, "
            f"collateral {amount(pos.collateral, 4)} {q}",
        ),
        (
            "prices",
            f"entry {amount(pos.entry_price)}, mark {amount(st.mark)}, index "
            f"{amount(index) if index else 'oracle down'}",
        ),
        (
            "PnL",
            (f"{signed(pnl)} {q} at the index" if pnl is not None else "n/a")
            + (
                f"; closing now pays out {amount(settle.payout)} {q} (exit {amount(exit_price)})"
                if settle is not None and settle.equity >= 0
                else ""
            ),
        ),
        (
            "funding",
            f"{'owes' if funding >= 0 else 'is owed'} {amount(abs(funding), 6)} {q}; "
            + (
                "nothing accrues at the current rate and book"
                if per_s == 0
                else f"{'pays' if per_s > 0 else 'receives'} "
                f"{amount(abs(calc.funding_over(per_s)), 6)} {q} per 8h at the current book"
            ),
        ),
        (
            "health",
            f"margin {amount(margin_)} / maintenance {amount(mm)}"
            + (f" (ratio {ratio:.3f})" if ratio is not None else "")
            + ("  LIQUIDATABLE" if liquidatable else ""),
        ),
        ("liquidation price", _liq_text(liq)),
    ]
    lines = [f"#{pos.token_id} {m.pair} {_side(pos.is_long)}", *table(rows)]
    return data, lines


@trade.command("positions")
@click.option("--owner", default=None, help="Whose positions (default: your key's address).")
@click.option(
    "--from-block",
    type=click.IntRange(min=0),
    default=None,
    help="Oldest block to look for positions in (default: the deployment's start block).",
)
@command(key=True)
def positions_cmd(common: Common, owner: str | None) -> None:
    """Open positions of an account, with PnL, funding, health and liquidation price."""

    async def body(s: Session) -> dict[str, Any]:
        who = owner
        source = common.key
        assert source is not None
        if who is None:
            if source.keystore is not None:
                # the address the keystore declares; decrypt only when it declares none
                who = keystore_address(source.keystore) or s.address()
            elif env_key_name(source):
                who = s.address()
            else:
                raise BadInput(
                    "whose positions? pass --owner ADDRESS, or set a key (or --keystore)"
                )
        if not is_address(who):
            raise BadInput(f"--owner is not an address: {who!r}")
        who = to_checksum_address(who)
        ids = await s.chain.position_ids(who)
        free, wallet = await asyncio.gather(
            s.chain.free_collateral(who), s.chain.token_balance(who)
        )
        views = [await _position_view(s, p) for i in ids if (p := await s.chain.position(i))]
        lines = [
            f"account {who}: free collateral {amount(free, 2)} vUSDT in the Vault, wallet "
            f"{amount(wallet, 2)} vUSDT; {len(views)} open position(s)"
        ]
        for _, v in views:
            lines.extend(v)
        s.out.preview(lines)
        return {
            "owner": who,
            "free_collateral": exact(free),
            "wallet_balance": exact(wallet),
            "positions": [d for d, _ in views],
        }

    run(common, "positions", body)


# -------------------------------------------------------------------- collateral


async def _approve_and_deposit(s: Session, me: str, value: int) -> list[dict[str, Any]]:
    txs = []
    if await s.chain.allowance(me) < value:
        r = await s.send(s.chain.encode_token("approve", [s.chain.vault.address, value]), "approve")
        txs.append({"step": "approve", **_tx_json(r)})
    r = await s.send(s.chain.encode_vault("deposit", [value]), "deposit")
    txs.append({"step": "deposit", **_tx_json(r)})
    return txs


@trade.command("faucet")
@click.argument("amount_text", metavar="[AMOUNT]", default=DEFAULT_FAUCET)
@click.option(
    "--deposit/--no-deposit",
    default=True,
    show_default=True,
    help="Deposit what the faucet gives into the Vault as free collateral.",
)
@command(key=True, send=True)
def faucet_cmd(common: Common, amount_text: str, deposit: bool) -> None:
    """Get test vUSDT from the collateral token's faucet (test chains) and deposit it."""

    async def body(s: Session) -> dict[str, Any]:
        value = _parsed(calc.parse_amount, amount_text, "amount")
        enabled, limit = await s.chain.faucet_limits()
        if not enabled:
            raise BadInput("this chain's collateral token has its faucet turned off")
        if value > limit:
            raise BadInput(f"the faucet gives at most {amount(limit, 2)} vUSDT per call")
        me = s.address()
        s.out.preview(
            [
                f"Faucet {amount(value, 2)} vUSDT to {me}"
                + (" and deposit it into the Vault" if deposit else "")
            ]
        )
        s.confirm("Send?")
        txs = []
        r = await s.send(s.chain.encode_token("faucet", [value]), "faucet")
        txs.append({"step": "faucet", **_tx_json(r)})
        if deposit:
            txs.extend(await _approve_and_deposit(s, me, value))
        free, wallet = await asyncio.gather(s.chain.free_collateral(me), s.chain.token_balance(me))
        s.out.line(
            f"got {amount(value, 2)} vUSDT; free collateral {amount(free, 2)}, wallet "
            f"{amount(wallet, 2)}"
        )
        return {
            "account": me,
            "amount": exact(value),
            "deposited": deposit,
            "txs": txs,
            "free_collateral": exact(free),
            "wallet_balance": exact(wallet),
        }

    run(common, "faucet", body)


@trade.command("deposit")
@click.argument("amount_text", metavar="AMOUNT")
@command(key=True, send=True)
def deposit_cmd(common: Common, amount_text: str) -> None:
    """Deposit AMOUNT vUSDT from your wallet into the Vault (free collateral)."""

    async def body(s: Session) -> dict[str, Any]:
        value = _parsed(calc.parse_amount, amount_text, "amount")
        me = s.address()
        wallet = await s.chain.token_balance(me)
        if value > wallet:
            raise BadInput(
                f"your wallet holds {amount(wallet, 2)} vUSDT, less than {amount(value, 2)}"
            )
        s.out.preview([f"Deposit {amount(value, 2)} vUSDT from {me} into the Vault"])
        s.confirm("Send?")
        txs = await _approve_and_deposit(s, me, value)
        free = await s.chain.free_collateral(me)
        s.out.line(f"deposited {amount(value, 2)} vUSDT; free collateral {amount(free, 2)}")
        return {"account": me, "amount": exact(value), "txs": txs, "free_collateral": exact(free)}

    run(common, "deposit", body)


@trade.command("withdraw")
@click.argument("amount_text", metavar="AMOUNT")
@command(key=True, send=True)
def withdraw_cmd(common: Common, amount_text: str) -> None:
    """Withdraw AMOUNT vUSDT of free collateral from the Vault to your wallet."""

    async def body(s: Session) -> dict[str, Any]:
        value = _parsed(calc.parse_amount, amount_text, "amount")
        me = s.address()
        free = await s.chain.free_collateral(me)
        if value > free:
            raise BadInput(
                f"not enough free collateral in the Vault: {amount(free, 2)} vUSDT free, less "
                f"than {amount(value, 2)}"
            )
        s.out.preview([f"Withdraw {amount(value, 2)} vUSDT from the Vault to {me}"])
        s.confirm("Send?")
        r = await s.send(s.chain.encode_vault("withdraw", [value]), "withdraw")
        free_after = await s.chain.free_collateral(me)
        s.out.line(f"withdrew {amount(value, 2)} vUSDT; free collateral {amount(free_after, 2)}")
        return {
            "account": me,
            "amount": exact(value),
            "tx": _tx_json(r),
            "free_collateral": exact(free_after),
        }

    run(common, "withdraw", body)
