from __future__ import annotations

import httpx
import pytest

from services.indexer.chunking import Outcome
from services.indexer.rpc import (
    RpcError,
    _parse_reply,
    classify_http_status,
    classify_rpc_error,
    parse_retry_after,
)


@pytest.mark.parametrize(
    ("status", "outcome"),
    [
        (200, None),
        (429, Outcome.RATE_LIMITED),
        (500, Outcome.TRANSIENT),
        (502, Outcome.TRANSIENT),
        (503, Outcome.TRANSIENT),
        (504, Outcome.TIMEOUT),
        (408, Outcome.TIMEOUT),
        (413, Outcome.TOO_MANY_RESULTS),
    ],
)
def test_http_status(status: int, outcome: Outcome | None) -> None:
    assert classify_http_status(status) is outcome


@pytest.mark.parametrize(
    ("code", "message", "outcome"),
    [
        (-32005, "query returned more than 10000 results", Outcome.TOO_MANY_RESULTS),
        (
            -32602,
            "Log response size exceeded. You can make eth_getLogs requests with up to a "
            "2K block range",
            Outcome.RANGE_TOO_LARGE,
        ),
        (-32000, "block range is too large", Outcome.RANGE_TOO_LARGE),
        (-32000, "exceed maximum block range: 1000", Outcome.RANGE_TOO_LARGE),
        (-32600, "eth_getLogs is limited to a 10,000 range", Outcome.RANGE_TOO_LARGE),
        (-32000, "too many logs", Outcome.TOO_MANY_RESULTS),
        (429, "whatever", Outcome.RATE_LIMITED),
        (-32016, "rate limit exceeded", Outcome.RATE_LIMITED),
        # Infura's -32005 is also its rate limit: not a reason to shrink the range
        (-32005, "project ID request rate exceeded", Outcome.RATE_LIMITED),
        (-32000, "request timed out", Outcome.TIMEOUT),
        (-32000, "header not found", Outcome.TRANSIENT),
    ],
)
def test_rpc_errors(code: int, message: str, outcome: Outcome) -> None:
    assert classify_rpc_error(code, message) is outcome


def test_retry_after() -> None:
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") is None


@pytest.mark.parametrize(
    ("status", "body", "outcome"),
    [
        (
            400,
            b'{"jsonrpc":"2.0","id":1,"error":{"code":-32602,"message":"block range is too large"}}',
            Outcome.RANGE_TOO_LARGE,
        ),
        (
            500,
            b'{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"query returned more than 10000 results"}}',
            Outcome.TOO_MANY_RESULTS,
        ),
        (502, b"<html>bad gateway</html>", Outcome.TRANSIENT),
        (
            429,
            b'{"error":{"code":-32000,"message":"block range is too large"}}',
            Outcome.RATE_LIMITED,
        ),
    ],
)
def test_an_error_status_is_read_for_its_json_rpc_error(
    status: int, body: bytes, outcome: Outcome
) -> None:
    """Providers that answer "ask for less" with a 400/500 still make the span shrink."""
    resp = httpx.Response(status, content=body, request=httpx.Request("POST", "http://node"))
    with pytest.raises(RpcError) as err:
        _parse_reply(resp, "eth_getLogs")
    assert err.value.outcome is outcome
