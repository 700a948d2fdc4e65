"""JSON-RPC over httpx, with the errors classified for the chunk policy: `JsonRpc` (async, for
the event loop) and `BlockingRpc` (for the indexer's fetch threads).

Plain JSON-RPC (not web3's contract layer) keeps eth_getLogs cheap: the response is parsed once
(orjson) and handed to the decoder as dicts. Every failure becomes an `RpcError` carrying an `RangeOutcome`:
429 -> RATE_LIMITED (with Retry-After), 5xx / connection errors / truncated or non-JSON bodies
-> TRANSIENT, timeouts -> TIMEOUT, and the providers' "block range too large" / "too many
results" messages -> RANGE_TOO_LARGE / TOO_MANY_RESULTS.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx
import orjson
from tenacity import (
    AsyncRetrying,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)

from services.indexer.chunking import RangeOutcome
from shared.telemetry import tracer

_tracer = tracer("perpex.indexer.rpc")

_RANGE_PATTERNS = re.compile(
    r"block range|range too (large|wide|big)|range is too large|limited to (a )?[\d,]+ (block )?range|"
    r"exceed(s|ed)? (the )?max(imum)? "
    r"block range|blocks? range|too many blocks|range limit|max(imum)? range|ranges? over",
    re.IGNORECASE,
)
_TOO_MANY_PATTERNS = re.compile(
    r"too many (results|logs|events)|more than \d+ (results|logs)|query returned more than|"
    r"result(s)? (set )?(is )?too large|response (size|is too large)|limit exceeded|"
    r"log response size exceeded|exceeds? (the )?max(imum)? results",
    re.IGNORECASE,
)
_RATE_PATTERNS = re.compile(
    r"rate limit|rate exceeded|request rate|too many requests|request limit|throttl", re.IGNORECASE
)
_TIMEOUT_PATTERNS = re.compile(r"timeout|timed out|deadline", re.IGNORECASE)


class RpcError(Exception):
    def __init__(self, outcome: RangeOutcome, message: str, retry_after: float | None = None):
        super().__init__(f"{outcome.value}: {message}")
        self.outcome = outcome
        self.message = message
        self.retry_after = retry_after

    def __reduce__(self) -> tuple[Any, ...]:  # picklable, whatever its constructor takes
        return (RpcError, (self.outcome, self.message, self.retry_after))


def _transport_error(exc: httpx.HTTPError, label: str) -> RpcError:
    if isinstance(exc, httpx.TimeoutException):
        return RpcError(RangeOutcome.TIMEOUT, f"{label}: {type(exc).__name__}")
    return RpcError(RangeOutcome.TRANSIENT, f"{label}: {type(exc).__name__}: {exc}")


def _parse_reply(resp: httpx.Response, label: str) -> Any:
    outcome = classify_http_status(resp.status_code)
    if outcome is not None:
        detail = ""
        if outcome is RangeOutcome.TRANSIENT:
            # Some providers send "block range too large" / "too many results" with a 400 or
            # 500: read the JSON-RPC error, or the span would never shrink.
            outcome, detail = _error_body(resp, outcome)
        raise RpcError(
            outcome,
            f"{label}: HTTP {resp.status_code}{detail}",
            parse_retry_after(resp.headers.get("retry-after")),
        )
    try:
        return orjson.loads(resp.content)
    except ValueError as exc:  # orjson.JSONDecodeError is a ValueError
        raise RpcError(RangeOutcome.TRANSIENT, f"{label}: body is not JSON ({exc})") from None


def _error_body(resp: httpx.Response, default: RangeOutcome) -> tuple[RangeOutcome, str]:
    try:
        reply = orjson.loads(resp.content)
    except ValueError:
        return default, ""
    err = reply.get("error") if isinstance(reply, dict) else None
    if not isinstance(err, dict) or not isinstance(err.get("message"), str):
        return default, ""
    code = err.get("code") if isinstance(err.get("code"), int) else None
    return classify_rpc_error(code, err["message"]), f" ({err['message'][:200]})"


def classify_http_status(status: int) -> RangeOutcome | None:
    """RangeOutcome of a non-2xx HTTP status (None: 2xx, read the body)."""
    if 200 <= status < 300:
        return None
    if status == 429:
        return RangeOutcome.RATE_LIMITED
    if status in (408, 504):
        return RangeOutcome.TIMEOUT
    if status == 413:
        return RangeOutcome.TOO_MANY_RESULTS
    return RangeOutcome.TRANSIENT


def classify_rpc_error(code: int | None, message: str) -> RangeOutcome:
    """RangeOutcome of a JSON-RPC error object."""
    if code == 429 or _RATE_PATTERNS.search(message):
        return RangeOutcome.RATE_LIMITED
    if _RANGE_PATTERNS.search(message):
        return RangeOutcome.RANGE_TOO_LARGE
    if code == -32005 or _TOO_MANY_PATTERNS.search(message):
        return RangeOutcome.TOO_MANY_RESULTS
    if _TIMEOUT_PATTERNS.search(message):
        return RangeOutcome.TIMEOUT
    return RangeOutcome.TRANSIENT


def parse_retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


@dataclass(frozen=True, slots=True)
class BlockHeader:
    number: int
    hash: str
    parent_hash: str
    timestamp: int


def logs_filter(
    addresses: Sequence[str], topics: Sequence[str], from_block: int, to_block: int
) -> dict[str, Any]:
    flt: dict[str, Any] = {
        "address": list(addresses),
        "fromBlock": hex(from_block),
        "toBlock": hex(to_block),
    }
    if topics:
        flt["topics"] = [list(topics)]
    return flt


def _logs_result(result: Any) -> list[dict[str, Any]]:
    if not isinstance(result, list):
        raise RpcError(RangeOutcome.TRANSIENT, "eth_getLogs: result is not a list")
    return result


def _result(reply: Any, label: str) -> Any:
    if not isinstance(reply, dict):
        raise RpcError(RangeOutcome.TRANSIENT, f"{label}: reply is not an object")
    if reply.get("error") is not None:
        err = reply["error"]
        code = err.get("code") if isinstance(err, dict) else None
        message = str(err.get("message", err)) if isinstance(err, dict) else str(err)
        raise RpcError(classify_rpc_error(code, message), f"{label}: {message}")
    if "result" not in reply:
        raise RpcError(RangeOutcome.TRANSIENT, f"{label}: reply has no result")
    return reply["result"]


def _batch_results(requests: list[dict[str, Any]], replies: Any, label: str) -> list[Any]:
    if not isinstance(replies, list) or len(replies) != len(requests):
        raise RpcError(RangeOutcome.TRANSIENT, f"{label}: batch reply has the wrong shape")
    by_id = {r.get("id"): r for r in replies if isinstance(r, dict)}
    return [_result(by_id.get(req["id"]), label) for req in requests]


def _headers(wanted: list[int], results: list[Any]) -> dict[int, BlockHeader | None]:
    out: dict[int, BlockHeader | None] = {}
    for n, block in zip(wanted, results, strict=True):
        if block is None:
            out[n] = None
            continue
        try:
            header = BlockHeader(
                number=int(block["number"], 16),
                hash=block["hash"].lower(),
                parent_hash=block["parentHash"].lower(),
                timestamp=int(block["timestamp"], 16),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise RpcError(RangeOutcome.TRANSIENT, f"block {n}: malformed header") from None
        if header.number != n:
            raise RpcError(RangeOutcome.TRANSIENT, f"block {n}: node answered another block")
        out[n] = header
    return out


def _header_calls(wanted: list[int]) -> list[tuple[str, Sequence[Any]]]:
    return [("eth_getBlockByNumber", [hex(n), False]) for n in wanted]


class _Requests:
    """JSON-RPC request objects with increasing ids (unique across threads: a batch's replies
    are matched by id)."""

    def __init__(self) -> None:
        self._ids = itertools.count(1)
        self.calls = 0

    def _request(self, method: str, params: Sequence[Any]) -> dict[str, Any]:
        return {"jsonrpc": "2.0", "id": next(self._ids), "method": method, "params": list(params)}


class JsonRpc(_Requests):
    """A small async JSON-RPC client. One connection pool per instance."""

    def __init__(self, url: str, timeout: float = 15.0, max_retries: int = 5):
        super().__init__()
        self.url = url
        self.timeout = timeout
        self.max_retries = max_retries
        self._client = httpx.AsyncClient(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            limits=httpx.Limits(max_connections=8, max_keepalive_connections=8),
            headers={"Content-Type": "application/json"},
        )

    async def close(self) -> None:
        await self._client.aclose()

    async def __aenter__(self) -> JsonRpc:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ---- transport ----
    async def _post(self, payload: Any, label: str) -> Any:
        self.calls += 1
        with _tracer.start_as_current_span(f"rpc {label}") as span:
            span.set_attribute("rpc.system", "jsonrpc")
            span.set_attribute("rpc.method", label)
            try:
                resp = await self._client.post(self.url, content=orjson.dumps(payload))
            except httpx.HTTPError as exc:
                raise _transport_error(exc, label) from None
            return _parse_reply(resp, label)

    async def call_once(self, method: str, params: Sequence[Any] = ()) -> Any:
        reply = await self._post(self._request(method, params), method)
        return _result(reply, method)

    async def batch_once(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        if not calls:
            return []
        requests = [self._request(m, p) for m, p in calls]
        label = f"batch[{len(calls)}] {calls[0][0]}"
        return _batch_results(requests, await self._post(requests, label), label)

    def _retrying(self) -> AsyncRetrying:
        def retryable(exc: BaseException) -> bool:
            return isinstance(exc, RpcError) and exc.outcome in (
                RangeOutcome.TRANSIENT,
                RangeOutcome.TIMEOUT,
                RangeOutcome.RATE_LIMITED,
            )

        return AsyncRetrying(
            retry=retry_if_exception(retryable),
            stop=stop_after_attempt(self.max_retries + 1),
            wait=wait_exponential_jitter(multiplier=0.1, max=5.0, jitter=0.1),
            reraise=True,
        )

    async def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        """A call retried on transient errors (MAX_RETRIES times, exponential backoff)."""
        async for attempt in self._retrying():
            with attempt:
                return await self.call_once(method, params)
        raise AssertionError("unreachable")

    async def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        async for attempt in self._retrying():
            with attempt:
                return await self.batch_once(calls)
        raise AssertionError("unreachable")

    # ---- methods ----
    async def chain_id(self) -> int:
        return int(await self.call("eth_chainId"), 16)

    async def block_number(self) -> int:
        return int(await self.call("eth_blockNumber"), 16)

    async def headers(self, numbers: Iterable[int]) -> dict[int, BlockHeader | None]:
        """Headers of the given blocks in one batch; None for blocks the node does not have."""
        wanted = sorted(set(numbers))
        if not wanted:
            return {}
        return _headers(wanted, await self.batch(_header_calls(wanted)))


class BlockingRpc(_Requests):
    """The same calls on a blocking client, for the indexer's fetch threads (where a
    megabytes-long eth_getLogs answer streams in at the node's pace whatever the event loop is
    doing). Safe to share between threads. Not retried: the chunk policy handles every error."""

    def __init__(self, url: str, timeout: float = 15.0):
        super().__init__()
        self.url = url
        self._client = httpx.Client(
            timeout=httpx.Timeout(timeout, connect=min(timeout, 5.0)),
            headers={"Content-Type": "application/json"},
        )

    def close(self) -> None:
        self._client.close()

    def _post(self, payload: Any, label: str) -> Any:
        self.calls += 1
        with _tracer.start_as_current_span(f"rpc {label}") as span:
            span.set_attribute("rpc.system", "jsonrpc")
            span.set_attribute("rpc.method", label)
            try:
                resp = self._client.post(self.url, content=orjson.dumps(payload))
            except httpx.HTTPError as exc:
                raise _transport_error(exc, label) from None
            return _parse_reply(resp, label)

    def get_logs(
        self, addresses: Sequence[str], topics: Sequence[str], from_block: int, to_block: int
    ) -> list[dict[str, Any]]:
        flt = logs_filter(addresses, topics, from_block, to_block)
        return _logs_result(
            _result(self._post(self._request("eth_getLogs", [flt]), "eth_getLogs"), "eth_getLogs")
        )

    def headers(self, numbers: Iterable[int]) -> dict[int, BlockHeader | None]:
        wanted = sorted(set(numbers))
        if not wanted:
            return {}
        requests = [self._request(m, p) for m, p in _header_calls(wanted)]
        label = f"batch[{len(wanted)}] eth_getBlockByNumber"
        return _headers(wanted, _batch_results(requests, self._post(requests, label), label))
