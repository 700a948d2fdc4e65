"""Errors of the transaction sender, and which RPC failures may pass on a retry
(`is_transient`: the one classification every RPC path of the services uses)."""

from __future__ import annotations

import asyncio
import json

import aiohttp
from web3.exceptions import BadResponseFormat, Web3RPCError

from shared.chain.errors import (
    ErrorKind,
    InsufficientBalanceError,
    TxRevertedError,
    classify_message,
)


class TxTimeoutError(RuntimeError):
    """Not mined within CONFIRM_TIMEOUT_S. The transaction stays tracked (and replaced)."""


class TxNonceConsumedError(RuntimeError):
    """The nonce of a pending transaction was used by a transaction we did not send (the wallet
    is shared with another process): none of our hashes will ever be mined."""


class TxCancelledError(RuntimeError):
    """The transaction's nonce was filled by a cancellation (the node refused its own bytes)."""


class NonceGapError(RuntimeError):
    """A nonce below the next one cannot be filled: new work would only queue behind it."""


_TRANSIENT_NAMES = frozenset(
    {
        "ClientConnectorError",
        "ServerDisconnectedError",
        "ClientOSError",
        "ClientPayloadError",
        "ServerTimeoutError",
        "HTTPError",
        "ConnectError",
        "ReadError",
        "RemoteProtocolError",
        "KafkaConnectionError",
    }
)


def is_transient(exc: BaseException) -> bool:
    """A failure that may pass if the same request is made again: timeouts, dropped or refused
    connections, HTTP 408/425/429/5xx, a body cut short (not JSON), a transient JSON-RPC error."""
    if isinstance(
        exc,
        (
            TxRevertedError,
            InsufficientBalanceError,
            TxTimeoutError,
            TxNonceConsumedError,
            TxCancelledError,
            NonceGapError,
        ),
    ):
        return False
    if isinstance(exc, aiohttp.ClientResponseError):
        return exc.status in (408, 425, 429) or exc.status >= 500
    if isinstance(exc, (aiohttp.ClientConnectionError, aiohttp.ClientPayloadError)):
        return True
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError, ConnectionError, OSError)):
        return True
    if isinstance(exc, (json.JSONDecodeError, BadResponseFormat)):
        return True  # an answer cut short
    if isinstance(exc, Web3RPCError):
        return classify_message(str(exc)) == ErrorKind.TRANSIENT
    name = type(exc).__name__
    return name in _TRANSIENT_NAMES or "Timeout" in name


_NOT_CONNECTED = ("ClientConnectorError", "ConnectError", "ConnectTimeout")


def maybe_delivered(exc: BaseException) -> bool:
    """A transient failure after the request may have reached the node (not a refused or
    failed connection, not a JSON-RPC error answer)."""
    if isinstance(exc, ConnectionRefusedError) or type(exc).__name__ in _NOT_CONNECTED:
        return False
    return not isinstance(exc, Web3RPCError) and is_transient(exc)


def nonce_error(exc: BaseException) -> bool:
    return isinstance(exc, Web3RPCError) and classify_message(str(exc)) == ErrorKind.NONCE
