"""Two real anvils (chain ids 31337 and 31338) with the protocol and the bridge deployed by the
project's deploy flow, and `perpex relayer` run as its own process, as in a deployment."""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from eth_account import Account
from web3 import Web3

from perpex_cli.services import ServiceProcess
from perpex_dev.devstack.accounts import ANVIL_KEYS, RELAYER
from perpex_dev.devstack.bridge import LocalBridge
from perpex_dev.devstack.ports import free_port
from perpex_dev.devstack.stack import LocalStack
from shared.chain.deployment import Deployment

RELAYER_ADDRESS = Account.from_key(ANVIL_KEYS[RELAYER]).address
LZ_RECEIVE = bytes.fromhex(
    Web3.keccak(text="lzReceive((uint32,bytes32,uint64),address,bytes32,bytes,bytes)")[:4].hex()
)
VALIDATE_PACKET = bytes.fromhex(Web3.keccak(text="validatePacket(bytes)")[:4].hex())


@dataclass
class BridgeEnv:
    stack: LocalStack
    deployment: Deployment
    deployment_path: Path
    workdir: Path
    home: Web3 = field(init=False)
    remote: Web3 = field(init=False)
    bridge: LocalBridge = field(init=False)

    def __post_init__(self) -> None:
        self.home = Web3(Web3.HTTPProvider(self.stack.anvil.url, request_kwargs={"timeout": 30}))
        self.remote = Web3(
            Web3.HTTPProvider(self.stack.remote_anvil.url, request_kwargs={"timeout": 30})
        )
        self.bridge = LocalBridge(self.home, self.remote, self.deployment)

    @property
    def state_file(self) -> Path:
        return self.workdir / "relayer-state.json"

    def relayer_env(self) -> dict[str, str]:
        return {
            **self.stack.env(),
            "DEPLOYMENT_FILE": str(self.deployment_path),
            "RELAYER_PRIVATE_KEY": ANVIL_KEYS[RELAYER],
            "RELAYER_STATE_FILE": str(self.state_file),
            "POLL_INTERVAL_MS": "100",
            "LOG_LEVEL": "INFO",
            "OTEL_SDK_DISABLED": "true",
        }

    def relayer(self, name: str = "relayer", **env: str) -> ServiceProcess:
        svc = ServiceProcess(
            name,
            ["relayer"],
            {**self.relayer_env(), **env},
            self.workdir / f"{name}.log",
            free_port(),
        )
        svc.start()
        return svc


def rpc(w3: Web3, method: str, params: list[Any]) -> Any:
    resp = w3.provider.make_request(method, params)  # type: ignore[arg-type]
    if "error" in resp:
        raise RuntimeError(f"{method}: {resp['error']}")
    return resp.get("result")


def nonce(w3: Web3, address: str, block: str = "latest") -> int:
    return int(w3.eth.get_transaction_count(address, block))  # type: ignore[arg-type]


def pending_input(w3: Web3, sender: str) -> bytes | None:
    """The calldata of `sender`'s transaction waiting in anvil's mempool, if any."""
    block = rpc(w3, "eth_getBlockByNumber", ["pending", True])
    for tx in block["transactions"]:
        if tx["from"].lower() == sender.lower():
            return bytes.fromhex(tx["input"].removeprefix("0x"))
    return None


def wait_for(
    cond: Callable[[], Any], within: float, what: str, svc: ServiceProcess | None = None
) -> Any:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        value = cond()
        if value:
            return value
        if svc is not None and not svc.running():
            raise AssertionError(f"{svc.name} exited while waiting for {what}:\n{svc.tail()}")
        time.sleep(0.05)
    tail = f"\n{svc.tail()}" if svc is not None else ""
    raise AssertionError(f"timed out after {within}s waiting for {what}{tail}")


def sigkill(svc: ServiceProcess) -> None:
    assert svc.proc is not None
    svc.proc.kill()
    svc.proc.wait(10)
    assert svc.proc.returncode == -9


def environ() -> dict[str, str]:
    return dict(os.environ)
