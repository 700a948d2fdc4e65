"""The trader's key: from the environment or an encrypted keystore file, never from a flag.

Order: ``--keystore PATH`` (or ``$PERPEX_KEYSTORE``) with its password from the variable named by
``--password-env`` (default ``KEYSTORE_PASSWORD``) or a hidden prompt; otherwise the variable
named by ``--key-env``, else ``TRADER_PRIVATE_KEY``, else ``PRIVATE_KEY``. The key is held as a
`SecretStr` and registered with the `Scrubber`, which removes it (and the password, and the
RPC URL's path and query) from anything the CLI prints.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from eth_account import Account
from eth_utils import is_address, to_checksum_address
from pydantic import SecretStr

from shared.config import _validate_private_key, redact_url

KEY_ENVS = ("TRADER_PRIVATE_KEY", "PRIVATE_KEY")
PASSWORD_ENV = "KEYSTORE_PASSWORD"


class WalletError(ValueError):
    """No usable key (the message never contains key material)."""


@dataclass
class Scrubber:
    """Removes registered secrets from text before it is printed."""

    secrets: set[str] = field(default_factory=set)
    replacements: dict[str, str] = field(default_factory=dict)

    def add(self, secret: str) -> None:
        s = secret.strip()
        if len(s) >= 6:
            self.secrets.add(s)
            if s.lower().startswith("0x"):
                self.secrets.add(s[2:])

    def add_url(self, url: str) -> None:
        """The URL itself becomes its redacted form (its path and query may hold an API key)."""
        redacted = redact_url(url)
        if redacted != url:
            self.replacements[url] = redacted
            self.replacements[url.rstrip("/")] = redacted
            rest = url.split("://", 1)[-1].split("/", 1)
            if len(rest) == 2:
                tail = rest[1]
                for piece in [tail, *re.split(r"[/?&=#]", tail)]:
                    if len(piece) >= 6:
                        self.secrets.add(piece)
            netloc = url.split("://", 1)[-1].split("/", 1)[0]
            if "@" in netloc:  # user:password@host
                self.secrets.add(netloc.rsplit("@", 1)[0])

    def __call__(self, text: str) -> str:
        for raw, safe in sorted(self.replacements.items(), key=lambda kv: -len(kv[0])):
            text = text.replace(raw, safe)
        for secret in sorted(self.secrets, key=len, reverse=True):
            text = text.replace(secret, "***")
            text = text.replace(secret.lower(), "***")
        return text


@dataclass(frozen=True)
class KeySource:
    keystore: Path | None
    password_env: str
    key_env: str | None

    def describe(self) -> str:
        if self.keystore is not None:
            return f"keystore {self.keystore}"
        return "$" + (self.key_env or " / $".join(KEY_ENVS))


def keystore_address(path: Path) -> str | None:
    """The address a keystore file declares (no password needed), if any."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    addr = data.get("address") if isinstance(data, dict) else None
    if isinstance(addr, str):
        addr = addr if addr.startswith("0x") else "0x" + addr
        if is_address(addr):
            return to_checksum_address(addr)
    return None


def env_key_name(source: KeySource, env: dict[str, str] | None = None) -> str | None:
    env = dict(os.environ) if env is None else env
    names = (source.key_env,) if source.key_env else KEY_ENVS
    for name in names:
        if env.get(name, "").strip():
            return name
    return None


def load_key(
    source: KeySource,
    scrub: Scrubber,
    prompt_password: Callable[[], str] | None,
    env: dict[str, str] | None = None,
) -> SecretStr:
    """The trader's private key. Raises WalletError with a message safe to print."""
    env = dict(os.environ) if env is None else env
    if source.keystore is not None:
        return _from_keystore(source, scrub, prompt_password, env)
    name = env_key_name(source, env)
    if name is None:
        wanted = source.key_env or " or ".join(KEY_ENVS)
        raise WalletError(
            f"no trading key: set {wanted} in the environment or pass --keystore PATH"
        )
    raw = env[name]
    scrub.add(raw)
    try:
        key = _validate_private_key(SecretStr(raw))
    except ValueError as exc:
        raise WalletError(f"${name} {exc}") from None
    if key is None:
        raise WalletError(f"${name} is empty")
    scrub.add(key.get_secret_value())
    return key


def _from_keystore(
    source: KeySource,
    scrub: Scrubber,
    prompt_password: Callable[[], str] | None,
    env: dict[str, str],
) -> SecretStr:
    path = source.keystore
    assert path is not None
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise WalletError(f"keystore file {path} not found") from None
    except (OSError, ValueError) as exc:
        raise WalletError(
            f"keystore file {path} is not readable JSON ({type(exc).__name__})"
        ) from None
    password = env.get(source.password_env)
    if password is None:
        if prompt_password is None:
            raise WalletError(
                f"keystore {path} needs its password: set ${source.password_env} or run "
                "interactively"
            )
        password = prompt_password()
    scrub.add(password)
    try:
        raw = Account.decrypt(data, password)
    except ValueError as exc:
        if "MAC mismatch" in str(exc):
            raise WalletError(f"wrong password for keystore {path}") from None
        raise WalletError(f"keystore {path} cannot be decrypted (not a V3 keystore?)") from None
    except Exception as exc:
        raise WalletError(f"keystore {path} cannot be decrypted ({type(exc).__name__})") from None
    key = "0x" + bytes(raw).hex()
    scrub.add(key)
    return SecretStr(key)


def address_of(key: SecretStr) -> str:
    return str(Account.from_key(key.get_secret_value()).address)
