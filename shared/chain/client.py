"""Web3 clients for the services.

web3's own retry layer is off in the async client: it retries blindly (eth_sendRawTransaction
included) and hides from the transaction sender what it must see - whether a broadcast's
answer was lost. The sender and the services' loops classify failures and back off themselves.
"""

from __future__ import annotations

from web3 import AsyncHTTPProvider, AsyncWeb3, HTTPProvider, Web3


def async_web3(rpc_url: str, timeout: float = 30.0) -> AsyncWeb3:
    return AsyncWeb3(
        AsyncHTTPProvider(
            rpc_url, request_kwargs={"timeout": timeout}, exception_retry_configuration=None
        )
    )


def sync_web3(rpc_url: str, timeout: float = 30.0) -> Web3:
    return Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
