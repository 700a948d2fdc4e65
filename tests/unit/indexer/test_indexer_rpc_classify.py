from __future__ import annotations

import httpx
import pytest

from services.indexer.chunking import RangeOutcome
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
        (429, RangeOutcome.RATE_LIMITED),
        (500, RangeOutcome.TRANSIENT),
        (502, RangeOutcome.TRANSIENT),
        (503, RangeOutcome.TRANSIENT),
        (504, RangeOutcome.TIMEOUT),
        (408, RangeOutcome.TIMEOUT),
        (413, RangeOutcome.TOO_MANY_RESULTS),
    ],
)
def test_http_status(status: int, outcome: RangeOutcome | None) -> None:
    assert classify_http_status(status) is outcome


@pytest.mark.parametrize(
    ("code", "message", "outcome"),
    [
        (-32005, "query returned more than 10000 results", RangeOutcome.TOO_MANY_RESULTS),
        (
            -32602,
            "Log response size exceeded. You can make eth_getLogs requests with up to a "
            "2K block range",
            RangeOutcome.RANGE_TOO_LARGE,
        ),
        (-32000, "block range is too large", RangeOutcome.RANGE_TOO_LARGE),
        (-32000, "exceed maximum block range: 1000", RangeOutcome.RANGE_TOO_LARGE),
        (-32600, "eth_getLogs is limited to a 10,000 range", RangeOutcome.RANGE_TOO_LARGE),
        (-32000, "too many logs", RangeOutcome.TOO_MANY_RESULTS),
        (429, "whatever", RangeOutcome.RATE_LIMITED),
        (-32016, "rate limit exceeded", RangeOutcome.RATE_LIMITED),
        # Infura's -32005 is also its rate limit: not a reason to shrink the range
        (-32005, "project ID request rate exceeded", RangeOutcome.RATE_LIMITED),
        (-32000, "request timed out", RangeOutcome.TIMEOUT),
        (-32000, "header not found", RangeOutcome.TRANSIENT),
    ],
)
def test_rpc_errors(code: int, message: str, outcome: RangeOutcome) -> None:
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
            RangeOutcome.RANGE_TOO_LARGE,
        ),
        (
            500,
            b'{"jsonrpc":"2.0","id":1,"error":{"code":-32005,"message":"query returned more than 10000 results"}}',
            RangeOutcome.TOO_MANY_RESULTS,
        ),
        (502, b"<html>bad gateway</html>", RangeOutcome.TRANSIENT),
        (
            429,
            b'{"error":{"code":-32000,"message":"block range is too large"}}',
            RangeOutcome.RATE_LIMITED,
        ),
    ],
)
def test_an_error_status_is_read_for_its_json_rpc_error(
    status: int, body: bytes, outcome: RangeOutcome
) -> None:
    """Providers that answer "ask for less" with a 400/500 still make the span shrink."""
    resp = httpx.Response(status, content=body, request=httpx.Request("POST", "http://node"))
    with pytest.raises(RpcError) as err:
        _parse_reply(resp, "eth_getLogs")
    assert err.value.outcome is outcome
