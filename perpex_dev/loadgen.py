"""Trading activity on a local anvil, for the indexer's tests and benchmark.

Sends batches of eth_sendTransaction from anvil's unlocked dev accounts (one JSON-RPC batch per
call, no signing in Python), so tens of thousands of transactions take seconds, not minutes.
Not for real chains.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import httpx
from eth_abi import decode as abi_decode
from web3 import Web3

from shared.chain.abi import event_topic, load_abi
from shared.chain.deployment import Deployment

WAD = 10**18
GAS = 900_000
OPENED_TOPIC = event_topic("PositionManager", "PositionOpened")


class AnvilRpc:
    def __init__(self, url: str, timeout: float = 120.0):
        self.url = url
        self.client = httpx.Client(timeout=timeout)
        self._id = 0

    def call(self, method: str, params: Sequence[Any] = ()) -> Any:
        self._id += 1
        reply = self.client.post(
            self.url,
            json={"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)},
        ).json()
        if "error" in reply:
            raise RuntimeError(f"{method}: {reply['error']}")
        return reply["result"]

    def batch(self, calls: Sequence[tuple[str, Sequence[Any]]]) -> list[Any]:
        if not calls:
            return []
        payload = []
        for method, params in calls:
            self._id += 1
            payload.append(
                {"jsonrpc": "2.0", "id": self._id, "method": method, "params": list(params)}
            )
        replies = self.client.post(self.url, json=payload).json()
        by_id = {r["id"]: r for r in replies}
        out = []
        for req in payload:
            r = by_id[req["id"]]
            if "error" in r:
                raise RuntimeError(f"{req['method']}: {r['error']}")
            out.append(r["result"])
        return out

    def close(self) -> None:
        self.client.close()


@dataclass
class LoadGen:
    rpc_url: str
    deployment: Deployment
    seed: int = 7
    batch_size: int = 100  # larger batches make anvil drop transactions now and then
    rng: random.Random = field(init=False)
    owners: dict[int, str] = field(default_factory=dict)  # token id -> owner (lower-case)
    open_tokens: set[int] = field(default_factory=set)
    nonces: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        self.rpc = AnvilRpc(self.rpc_url)
        self.w3 = Web3()
        c = self.deployment.contracts
        self.pm = self.w3.eth.contract(
            address=Web3.to_checksum_address(c.position_manager), abi=load_abi("PositionManager")
        )
        self.vault = self.w3.eth.contract(
            address=Web3.to_checksum_address(c.vault), abi=load_abi("Vault")
        )
        self.token = self.w3.eth.contract(
            address=Web3.to_checksum_address(c.collateral_token), abi=load_abi("CollateralToken")
        )
        self.feed_abi = load_abi("SettableFeed")
        accounts = [a.lower() for a in self.rpc.call("eth_accounts")]
        self.deployer = self.deployment.deployer.lower()
        self.traders = [a for a in accounts if a != self.deployer][:6]
        self.keeper = self.traders.pop()

    # ---- plumbing ----
    def _tx(self, sender: str, to: str, data: str) -> tuple[str, list[Any]]:
        if sender not in self.nonces:
            self.nonces[sender] = int(
                self.rpc.call("eth_getTransactionCount", [sender, "pending"]), 16
            )
        nonce = self.nonces[sender]
        self.nonces[sender] = nonce + 1
        tx = {"from": sender, "to": to, "data": data, "gas": hex(GAS), "nonce": hex(nonce)}
        return ("eth_sendTransaction", [tx])

    def send(self, txs: Iterable[tuple[str, list[Any]]]) -> int:
        """Send with automine off, then mine until the pool is empty (as many transactions per
        block as the block gas limit allows), and turn automine back on."""
        txs = list(txs)
        if not txs:
            return 0
        self.rpc.call("evm_setAutomine", [False])
        try:
            for i in range(0, len(txs), self.batch_size):
                self.rpc.batch(txs[i : i + self.batch_size])
                self._mine_all()
        finally:
            self.rpc.call("evm_setAutomine", [True])
        return len(txs)

    def _mine_all(self) -> None:
        for _ in range(10_000):
            status = self.rpc.call("txpool_status")
            pending, queued = int(status["pending"], 16), int(status["queued"], 16)
            if pending == 0:
                if queued:
                    # a nonce gap: anvil dropped a transaction; the rest can never be mined
                    raise RuntimeError(f"{queued} transactions stuck behind a nonce gap")
                return
            self.rpc.call("evm_mine")
        raise RuntimeError("transactions stay pending")

    def block_number(self) -> int:
        return int(self.rpc.call("eth_blockNumber"), 16)

    def _track_opens(self, from_block: int) -> list[int]:
        logs = self.rpc.call(
            "eth_getLogs",
            [
                {
                    "address": self.pm.address,
                    "topics": [OPENED_TOPIC],
                    "fromBlock": hex(from_block),
                    "toBlock": "latest",
                }
            ],
        )
        new = []
        for log in logs:
            token_id = int(log["topics"][1], 16)
            self.owners[token_id] = "0x" + log["topics"][2][-40:]
            self.open_tokens.add(token_id)
            new.append(token_id)
        return new

    # ---- actions ----
    def fund_traders(self, amount: int = 50_000_000 * WAD) -> None:
        txs = []
        for t in [*self.traders, self.keeper]:
            txs.append(
                self._tx(
                    self.deployer,
                    self.token.address,
                    self.token.encode_abi("mint", args=[Web3.to_checksum_address(t), amount]),
                )
            )
            txs.append(
                self._tx(
                    t,
                    self.token.address,
                    self.token.encode_abi("approve", args=[self.vault.address, amount]),
                )
            )
            txs.append(
                self._tx(t, self.vault.address, self.vault.encode_abi("deposit", args=[amount]))
            )
        self.send(txs)

    def open_positions(self, count: int, max_leverage: int = 5) -> list[int]:
        start = self.block_number() + 1
        pairs = list(self.deployment.markets)
        txs = []
        for _ in range(count):
            trader = self.rng.choice(self.traders)
            market = self.deployment.market(self.rng.choice(pairs)).market_id_bytes
            collateral = self.rng.randint(500, 2_000) * WAD  # notional >= minNotional (440)
            leverage = self.rng.randint(WAD, max_leverage * WAD)
            is_long = self.rng.random() < 0.6
            data = self.pm.encode_abi(
                "openPosition", args=[market, is_long, collateral, leverage, 0]
            )
            txs.append(self._tx(trader, self.pm.address, data))
        self.send(txs)
        return self._track_opens(start)

    def change_margin(self, tokens: Sequence[int]) -> None:
        txs = []
        for t in tokens:
            if self.rng.random() < 0.7:
                data = self.pm.encode_abi("addMargin", args=[t, self.rng.randint(1, 300) * WAD])
            else:
                data = self.pm.encode_abi("removeMargin", args=[t, self.rng.randint(1, 20) * WAD])
            txs.append(self._tx(self.owners[t], self.pm.address, data))
        self.send(txs)

    def close_positions(self, tokens: Sequence[int]) -> None:
        txs = [
            self._tx(
                self.owners[t], self.pm.address, self.pm.encode_abi("closePosition", args=[t, 0])
            )
            for t in tokens
        ]
        self.send(txs)
        self.open_tokens.difference_update(tokens)

    def update_funding(self, pairs: Sequence[str] | None = None) -> None:
        interval = self.deployment.funding_interval
        self.rpc.call("evm_increaseTime", [interval + 1])
        txs = []
        for pair in pairs or list(self.deployment.markets):
            mid = self.deployment.market(pair).market_id_bytes
            txs.append(
                self._tx(
                    self.keeper,
                    self.pm.address,
                    self.pm.encode_abi("updateFundingRate", args=[mid]),
                )
            )
        self.send(txs)

    def set_index_price(self, pair: str, price: float) -> None:
        m = self.deployment.market(pair)
        feed = self.w3.eth.contract(
            address=Web3.to_checksum_address(m.oracle_feed), abi=self.feed_abi
        )
        answer = int(price * 10**m.feed_decimals)
        self.send(
            [self._tx(self.deployer, feed.address, feed.encode_abi("setPrice", args=[answer]))]
        )

    def liquidatable(self, tokens: Sequence[int]) -> list[int]:
        out = []
        for i in range(0, len(tokens), 200):
            chunk = list(tokens[i : i + 200])
            data = self.pm.encode_abi("getPositionsHealth", args=[chunk])
            raw = self.rpc.call("eth_call", [{"to": self.pm.address, "data": data}, "latest"])
            health = abi_decode(
                ["(uint256,bool,bool,int256,uint256,uint256)[]"], bytes.fromhex(raw[2:])
            )[0]
            out += [h[0] for h in health if h[2]]
        return out

    def liquidate(self, tokens: Sequence[int]) -> None:
        txs = [
            self._tx(
                self.keeper, self.pm.address, self.pm.encode_abi("liquidatePosition", args=[t])
            )
            for t in tokens
        ]
        self.send(txs)
        self.open_tokens.difference_update(tokens)

    def scenario(self, opens: int) -> None:
        """A mix of every event kind: opens, margin changes, funding, closes, liquidations."""
        tokens = self.open_positions(opens)
        self.change_margin(self.rng.sample(tokens, len(tokens) // 4))
        self.update_funding()
        more = self.open_positions(max(1, opens // 4))
        self.change_margin(self.rng.sample(more, len(more) // 3))
        self.close_positions(self.rng.sample(tokens, len(tokens) // 3))
        self.set_index_price(
            "ETH/USDT", float(self.deployment.market("ETH/USDT").initial_price) * 0.7
        )
        self.liquidate(self.liquidatable(sorted(self.open_tokens)))
        self.update_funding(["BTC/USDT"])

    def close(self) -> None:
        self.rpc.close()
