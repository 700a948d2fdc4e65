"""Logging for every Perp-EX service (and the operator, under kopf's formatter), with secrets
redacted: private keys and URL credentials never reach a log line, a traceback or (through
kopf) a Kubernetes Event.

What is masked, in every message and formatted line:
- every secret value the service knows of: its SecretStr settings (the wallet keys), the
  password of a DSN and the path/query of an RPC URL (where providers put API keys), and the
  value of every environment variable whose name says it is secret (PRIVATE_KEY, PASSWORD,
  SECRET, TOKEN, MNEMONIC, API_KEY, DB_URI...), with or without a 0x prefix, in any case;
- every URL, cut to scheme://host[:port] (a DSN keeps user, host and database);
- `name=value` / `"name": "value"` where the name says the value is a secret, and
  `Bearer <token>` / `Basic <credentials>`.

Messages are redacted where they are made (a LogRecord subclass whose getMessage() masks), so
every handler sees it, whatever its formatter; formatted lines (tracebacks included) are masked
again by the formatter of each console handler.
"""

from __future__ import annotations

import logging
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

from pydantic import SecretStr

from shared.config import redact_dsn, redact_url

LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MASK = "***"

_URL = re.compile(r"\b(?:https?|wss?|postgres(?:ql)?)://[^\s'\"<>)]+")
_SECRET_NAME = re.compile(
    r"(?i)(PRIVATE_?KEY|PASSWORD|PASSWD|SECRET|TOKEN|MNEMONIC|API_?KEY|CREDENTIAL|DB_URI|DSN|"
    r"OTLP_HEADERS)"
)
# names of references to secrets (a Secret's name, a file), not secrets themselves
_REFERENCE_NAME = re.compile(r"(?i)(SECRET_NAME|PULL_SECRETS|_FILE|_PATH)$")
_ASSIGNED = re.compile(
    r"(?i)\b([\w-]*(?:private[_-]?key|password|passwd|secret|api[_-]?key|access[_-]?token|"
    r"auth[_-]?token|mnemonic))(['\"]?\s*[:=]\s*['\"]?)([^\s'\",;&}]+)"
)
_AUTH = re.compile(r"(?i)\b(bearer|basic)\s+[\w.~+/=-]{8,}")
MIN_SECRET_LEN = 8  # shorter values (a port, "true") are not masked everywhere they occur

_secrets: set[str] = set()
_secret_re: re.Pattern[str] | None = None


def add_secret(value: str | SecretStr | None) -> None:
    """Mask `value` wherever it appears from now on (a hex key with or without 0x)."""
    if isinstance(value, SecretStr):
        value = value.get_secret_value()
    if not value or len(value.strip()) < MIN_SECRET_LEN:
        return
    value = value.strip()
    global _secret_re
    new = {value}
    if re.fullmatch(r"(0x)?[0-9a-fA-F]{32,}", value):
        bare = value.removeprefix("0x")
        new |= {bare, "0x" + bare}
    if new <= _secrets:
        return
    _secrets.update(new)
    ordered = sorted(_secrets, key=len, reverse=True)
    _secret_re = re.compile("|".join(re.escape(s) for s in ordered), re.IGNORECASE)


def _add_url_secrets(url: str) -> None:
    """The password of a URL, and the path and query of an HTTP/WebSocket one (an RPC
    provider's API key; a DSN's path is the database's name)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    add_secret(parts.password)
    if parts.scheme not in ("http", "https", "ws", "wss"):
        return
    for piece in (parts.path, parts.query):
        for segment in re.split(r"[/&=?]", piece):
            add_secret(segment)


def add_secrets_from_env(environ: Mapping[str, str] | None = None) -> None:
    """Every environment variable whose name says it holds a secret."""
    for name, value in (os.environ if environ is None else environ).items():
        if _SECRET_NAME.search(name) and not _REFERENCE_NAME.search(name):
            if "://" in value:  # a URL: its credentials (the rest is masked as a URL anyway)
                _add_url_secrets(value)
            else:
                add_secret(value)


def add_secrets_from_settings(settings: Any) -> None:
    """A settings model's SecretStr fields, and the credentials inside its URLs."""
    for name in getattr(type(settings), "model_fields", {}):
        value = getattr(settings, name, None)
        if isinstance(value, SecretStr):
            add_secret(value)
        elif isinstance(value, str) and re.match(r"^[a-z][a-z0-9+.-]*://", value):
            _add_url_secrets(value)


def redact_urls(text: str) -> str:
    """Every URL in `text` cut to scheme://host[:port] (DSNs keep user, host and database):
    an RPC URL's path or query may hold an API key, a DSN a password."""
    return _URL.sub(
        lambda m: (
            redact_dsn(m.group(0)) if m.group(0).startswith("postgres") else redact_url(m.group(0))
        ),
        text,
    )


def redact(text: str) -> str:
    """`text` with every known secret, URL credential and assigned secret masked."""
    if _secret_re is not None:
        text = _secret_re.sub(MASK, text)
    text = redact_urls(text)
    text = _ASSIGNED.sub(lambda m: f"{m.group(1)}{m.group(2)}{MASK}", text)
    return _AUTH.sub(lambda m: f"{m.group(1)} {MASK}", text)


class RedactedRecord(logging.LogRecord):
    """A log record whose message comes out redacted, for every handler."""

    def getMessage(self) -> str:
        return redact(super().getMessage())


class RedactingFormatter(logging.Formatter):
    """A log line, traceback included, redacted (exceptions from HTTP clients quote the URL
    they called). Wraps another formatter (kopf's) when given one."""

    def __init__(self, fmt: str | None = LOG_FORMAT, inner: logging.Formatter | None = None):
        super().__init__(fmt)
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        text = self.inner.format(record) if self.inner is not None else super().format(record)
        return redact(text)


def _ours(handler: logging.Handler) -> bool:
    """A console handler of this process (ours or kopf's), not a test runner's capture."""
    return isinstance(handler, logging.StreamHandler) and not type(handler).__module__.startswith(
        "_pytest"
    )


def install_redaction(environ: Mapping[str, str] | None = None) -> None:
    """Redact every record from now on, and every line the root's console handlers write."""
    add_secrets_from_env(environ)
    if logging.getLogRecordFactory() is logging.LogRecord:
        logging.setLogRecordFactory(RedactedRecord)
    for handler in logging.getLogger().handlers:
        if _ours(handler) and not isinstance(handler.formatter, RedactingFormatter):
            inner = handler.formatter
            handler.setFormatter(
                RedactingFormatter(inner=inner) if inner is not None else RedactingFormatter()
            )


def configure_logging(
    level: str, quiet: dict[str, int] | None = None, secrets: Iterable[Any] = ()
) -> None:
    """Log to stderr at `level`, redacted (`secrets`: settings objects whose secrets to mask,
    beside the environment's); `quiet` lowers chatty libraries."""
    logging.basicConfig(level=level, format=LOG_FORMAT, stream=sys.stderr)
    for settings in secrets:
        add_secrets_from_settings(settings)
    install_redaction()
    # asyncpg's pool logs each failed reconnect with a traceback while PostgreSQL is away; the
    # dependency watch says that in one line (PostgreSQL unreachable / reachable again).
    for name, lib_level in {"aiokafka": logging.ERROR, "httpx": logging.WARNING,
                            "asyncpg.pool": logging.ERROR, **(quiet or {})}.items():  # fmt: skip
        logging.getLogger(name).setLevel(lib_level)
