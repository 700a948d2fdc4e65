"""JSON-RPC clients that count every request they make, at the provider (the RPC layer).

The keeper uses two clients with separate counters: `health` (block polling, index prices,
market reads, batch health views, position reads) and `exec` (simulation, gas estimation,
fees, balance, nonce, broadcast, receipts). A JSON-RPC batch counts one request per call in
it. The benchmark reads these counters; they are measured, never estimated. web3's own
retry layer is off: the keeper's loops and the TxSender back off and retry themselves.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from web3 import AsyncHTTPProvider, AsyncWeb3
from web3.types import RPCEndpoint, RPCResponse


class RpcCounter:
    def __init__(self) -> None:
        self.by_method: Counter[str] = Counter()
        self.errors = 0

    @property
    def total(self) -> int:
        return sum(self.by_method.values())

    def add(self, method: str, n: int = 1) -> None:
        self.by_method[method] += n

    def snapshot(self) -> dict[str, int]:
        return dict(self.by_method)


class CountingHTTPProvider(AsyncHTTPProvider):
    """Counts every request that reaches the node. The chain id, which web3's validation asks
    for before every eth_call and gas estimate, is answered from memory once known: it cannot
    change under a running keeper (web3's own request cache is not safe under concurrency)."""

    def __init__(self, endpoint_uri: str, counter: RpcCounter, timeout: float = 15.0):
        super().__init__(
            endpoint_uri,
            request_kwargs={"timeout": timeout},
            exception_retry_configuration=None,
        )
        self.counter = counter
        self._chain_id: str | None = None

    async def make_request(self, method: RPCEndpoint, params: Any) -> RPCResponse:
        if method == "eth_chainId" and self._chain_id is not None:
            return {"jsonrpc": "2.0", "id": 0, "result": self._chain_id}
        self.counter.add(str(method))
        try:
            response = await super().make_request(method, params)
        except Exception:
            self.counter.errors += 1
            raise
        if method == "eth_chainId" and isinstance(response.get("result"), str):
            self._chain_id = response["result"]
        return response

    async def make_batch_request(
        self, batch_requests: list[tuple[RPCEndpoint, Any]]
    ) -> list[RPCResponse] | RPCResponse:
        for method, _ in batch_requests:
            self.counter.add(str(method))
        try:
            return await super().make_batch_request(batch_requests)
        except Exception:
            self.counter.errors += 1
            raise


def counting_web3(url: str, counter: RpcCounter, timeout: float = 15.0) -> AsyncWeb3:
    return AsyncWeb3(CountingHTTPProvider(url, counter, timeout))
