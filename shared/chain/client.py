"""Web3 clients for the services."""

from __future__ import annotations

from web3 import AsyncHTTPProvider, AsyncWeb3, HTTPProvider, Web3


def async_web3(rpc_url: str, timeout: float = 30.0) -> AsyncWeb3:
    return AsyncWeb3(AsyncHTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))


def sync_web3(rpc_url: str, timeout: float = 30.0) -> Web3:
    return Web3(HTTPProvider(rpc_url, request_kwargs={"timeout": timeout}))
