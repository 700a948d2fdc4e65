"""Output of `perpex trade`: human lines or one JSON object, errors as one line.

With ``--json`` stdout carries exactly one JSON object (the result, or ``{"ok": false, "error":
...}``); nothing else is written to it. Amounts, prices and sizes in JSON are exact decimal
strings in token units (WAD / 1e18), fractions are decimal strings (``"0.01"`` = 1%), revert
arguments are the raw integers as strings.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from typing import Any

import click

from perpex_cli.trade.calc import WAD, fmt_wad

EXIT_OK, EXIT_FAILURE, EXIT_BAD_INPUT = 0, 1, 2


def amount(value: int, places: int = 4) -> str:
    return fmt_wad(value, places)


def exact(value: int) -> str:
    """JSON form of a WAD value: exact decimal string."""
    return fmt_wad(value)


def tiny(value: int) -> str:
    """A small WAD value (a per-second rate): exact, without trailing zeros."""
    return fmt_wad(value)


def pct(fraction: int, places: int = 4) -> str:
    """A WAD fraction as a percentage (0.01e18 -> '1.0000%')."""
    return fmt_wad(fraction * 100, places) + "%"


def signed(value: int, places: int = 4) -> str:
    text = fmt_wad(value, places)
    return text if text.startswith("-") else "+" + text


def when(ts: int, now: int) -> str:
    at = datetime.fromtimestamp(ts, tz=UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    delta = ts - now
    if delta <= 0:
        return f"{at} (due now)"
    h, rem = divmod(delta, 3600)
    return f"{at} (in {h}h {rem // 60:02d}m)"


def leverage(value: int) -> str:
    return fmt_wad(value, 2).rstrip("0").rstrip(".") + "x"


class Out:
    """Where text goes. Human mode: everything on stdout, progress on stderr. JSON mode: one
    object on stdout; the preview goes to stderr only when a confirmation is asked."""

    def __init__(self, as_json: bool, yes: bool = True):
        self.as_json = as_json
        self.yes = yes

    def preview(self, lines: list[str]) -> None:
        if not self.as_json:
            for line in lines:
                click.echo(line)
        elif not self.yes:
            for line in lines:
                click.echo(line, err=True)

    def line(self, text: str) -> None:
        """A human result line (not shown with --json)."""
        if not self.as_json:
            click.echo(text)

    def progress(self, text: str) -> None:
        if not self.as_json:
            click.echo(text, err=True)

    def result(self, payload: dict[str, Any]) -> None:
        if self.as_json:
            sys.stdout.write(json.dumps({"ok": True, **payload}) + "\n")
            sys.stdout.flush()

    def error(self, kind: str, message: str, extra: dict[str, Any] | None = None) -> None:
        one_line = " ".join(message.split())
        click.echo(f"error: {one_line}", err=True)
        if self.as_json:
            body: dict[str, Any] = {"kind": kind, "message": one_line, **(extra or {})}
            sys.stdout.write(json.dumps({"ok": False, "error": body}) + "\n")
            sys.stdout.flush()


def table(rows: list[tuple[str, str]], indent: str = "  ") -> list[str]:
    width = max((len(k) for k, _ in rows), default=0)
    return [f"{indent}{k.ljust(width)}  {v}" for k, v in rows]


__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_FAILURE",
    "EXIT_OK",
    "WAD",
    "Out",
    "amount",
    "exact",
    "leverage",
    "pct",
    "signed",
    "table",
    "tiny",
    "when",
]
