"""The relayer: LayerZero's off-chain verifier (DVN) and executor for the bridge's two lanes.

For each lane (home -> remote, remote -> home) it follows the source endpoint's `PacketSent`
logs, keeps the bridge's packets (its OApp to the other end's OApp), and for each, in nonce
order: reads the destination endpoint (`inboundPayloadHash`, `lazyInboundNonce`), verifies it
there when it is not (`SimpleMessageLib.validatePacket`, the verifier role), and delivers it when
it is verified and not delivered (`EndpointV2.lzReceive`, the executor role).

Durable and exactly-once: every step is decided from the destination chain's state read just
before it, so a relayer killed at any point and restarted (or two of them) can only repeat a
read, never a credit: the endpoint deletes a payload hash when it delivers it, and the bridge
keeps its own per-path nonce. Transactions a killed run left in the mempool are waited for on
start. The state file (services.relayer.state) only spares rescanning: a packet leaves it once
the destination says it is delivered, and the scan cursor moves only after the packets it
passed are saved.

A delivery the destination refuses (its handler reverts: an empty reserve) is retried with
exponential back-off; later packets of the path wait behind it (ordered delivery).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from functools import partial
from typing import Any, TypeVar

from eth_utils import keccak
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    retry_if_exception,
    stop_after_attempt,
    wait_exponential_jitter,
)
from web3 import AsyncWeb3
from web3.exceptions import BlockNotFound, TransactionNotFound

from services.relayer.chains import Chain, Lane, PacketStatus, RelayerConfig
from services.relayer.packets import (
    EMPTY_PAYLOAD_HASH,
    NIL_PAYLOAD_HASH,
    BridgeMessage,
    MalformedPacket,
    Packet,
    left_pad,
    packet_from_log_data,
)
from services.relayer.state import RelayerState, Seen
from shared.chain.deployment import BridgeDeployment
from shared.chain.errors import TxRevertedError
from shared.chain.tx import is_transient
from shared.config import ConfigError
from shared.telemetry import meter, tracer

log = logging.getLogger("perpex.relayer")
_tracer = tracer("perpex.relayer")
_meter = meter("perpex.relayer")
_verified = _meter.create_counter("perpex_relayer_verified", description="packets verified")
_delivered = _meter.create_counter("perpex_relayer_delivered", description="packets delivered")
_refused = _meter.create_counter(
    "perpex_relayer_delivery_refused", description="deliveries the destination refused (retried)"
)

PACKET_SENT_TOPIC = "0x" + keccak(text="PacketSent(bytes,bytes,address)").hex()
T = TypeVar("T")


@dataclass
class Relayer:
    bridge: BridgeDeployment
    home: Chain
    remote: Chain
    state: RelayerState
    config: RelayerConfig = field(default_factory=RelayerConfig)
    heartbeat: float = field(default_factory=time.monotonic)
    ready: bool = False

    def __post_init__(self) -> None:
        self.lanes = [
            Lane(self.remote, self.home, self.state.lanes["remote->home"]),
            Lane(self.home, self.remote, self.state.lanes["home->remote"]),
        ]

    # ---- lifecycle ----
    async def start(self) -> None:
        """Check both chains and the wallet's role; wait for what a previous run left in the
        mempools (so nothing is sent twice)."""
        for chain in (self.home, self.remote):
            await self._check_chain(chain)
        for chain in (self.home, self.remote):
            left = await self._read(partial(chain.sender.wait_for_in_flight, timeout_s=120.0))
            if left:
                log.info("%d transaction(s) of a previous run on %s were mined", left, chain.name)
        self.ready = True

    async def _check_chain(self, chain: Chain) -> None:
        async def chain_id() -> int:
            return int(await chain.w3.eth.chain_id)

        reported = await self._read(chain_id)
        if reported != chain.side.chain_id:
            raise ConfigError(
                {
                    chain.name.upper(): f"node reports chain {reported}, the bridge's {chain.name} "
                    f"end is {chain.side.chain_id}"
                },
                "relayer",
            )
        lib = chain.lib
        if lib is None:
            return

        async def verifier() -> str:
            return str(await lib.functions.whitelistCaller().call())

        allowed = await self._read(verifier)
        if int(allowed, 16) != 0 and allowed.lower() != chain.sender.address.lower():
            raise ConfigError(
                {
                    "RELAYER_PRIVATE_KEY": f"{chain.sender.address} is not the {chain.name} message "
                    f"library's verifier ({allowed})"
                },
                "relayer",
            )

    async def run(self, stop: asyncio.Event, until_idle: bool = False) -> None:
        """Relay until `stop` (or, with until_idle, until both lanes are scanned to their head
        with nothing left to deliver)."""
        tasks = [
            asyncio.create_task(self._lane_loop(lane, stop, until_idle), name=lane.name)
            for lane in self.lanes
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    def status(self) -> dict[str, Any]:
        return {lane.name: lane.status() for lane in self.lanes}

    def wedged(self, after_s: float) -> bool:
        return time.monotonic() - self.heartbeat > after_s

    async def _lane_loop(self, lane: Lane, stop: asyncio.Event, until_idle: bool) -> None:
        while not stop.is_set():
            self.heartbeat = time.monotonic()
            try:
                progressed = await self.step(lane)
            except Exception as exc:
                lane.failures += 1
                if not is_transient(exc):
                    log.exception("%s: step failed", lane.name)
                else:
                    log.warning("%s: %s: %s (retrying)", lane.name, type(exc).__name__, exc)
                lane.last_error = f"{type(exc).__name__}: {exc}"
                progressed = False
                await _sleep(stop, self._backoff(lane))
                continue
            if until_idle and lane.idle:
                return
            if not progressed:
                delay = self.config.poll_s
                if lane.state.pending and lane.retry_at > time.monotonic():
                    delay = min(delay, lane.retry_at - time.monotonic())
                await _sleep(stop, max(delay, 0.01))

    # ---- one round ----
    async def step(self, lane: Lane) -> bool:
        """Scan one span of the source and relay what is pending. True when it made progress."""
        progressed = await self.scan(lane)
        if lane.state.pending and time.monotonic() >= lane.retry_at:
            progressed = await self.relay_pending(lane) or progressed
        lane.idle = lane.state.scanned_to >= lane.head and not lane.state.pending
        return progressed

    async def scan(self, lane: Lane) -> bool:
        w3 = lane.src.w3
        head = await self._read(w3.eth.get_block_number) - self.config.confirmations
        lane.head = head
        if not await self._cursor_holds(lane):
            log.warning(
                "%s: source block %d is not the one scanned (a reorg deeper than CONFIRMATIONS, "
                "or another chain): rescanning from block %d",
                lane.name,
                lane.state.scanned_to,
                lane.state.start + 1,
            )
            lane.state.reset()
            self.state.save()
        start = lane.state.scanned_to + 1
        if head < start:
            return False
        to = min(head, start + self.config.log_span - 1)
        query: Any = {
            "address": lane.src.side.endpoint,
            "topics": [PACKET_SENT_TOPIC],
            "fromBlock": start,
            "toBlock": to,
        }
        end = await self._block_hash(w3, to)
        logs = await self._read(lambda: w3.eth.get_logs(query))
        ours = 0
        sender = left_pad(lane.src.side.app)
        for entry in logs:
            try:
                packet = packet_from_log_data(bytes(entry["data"]))
            except MalformedPacket as exc:
                log.warning("%s: skipping a malformed PacketSent: %s", lane.name, exc)
                continue
            if (
                packet.dst_eid != lane.dst.side.eid
                or packet.sender != sender
                or packet.receiver != lane.dst.side.app
            ):
                continue  # another OApp's packet: not ours to verify
            seen = Seen(packet, _hex(entry["transactionHash"]), int(entry["blockNumber"]))
            lane.state.pending.setdefault(packet.guid_hex, seen)
            ours += 1
        lane.state.scanned_to, lane.state.scanned_hash = to, end
        self.state.save()  # the cursor moves only with the packets it passed
        if ours:
            log.info("%s: %d packet(s) sent in blocks %d-%d", lane.name, ours, start, to)
        return True

    async def relay_pending(self, lane: Lane) -> bool:
        progressed = False
        for key, seen in sorted(lane.state.pending.items(), key=lambda kv: kv[1].packet.nonce):
            packet = seen.packet
            status = await self.packet_status(lane.dst, packet)
            if status is PacketStatus.UNVERIFIED and not await self._on_source(lane, seen):
                log.warning(
                    "%s: nonce %d (tx %s) is no longer on the source chain; dropping it",
                    lane.name,
                    packet.nonce,
                    seen.tx_hash,
                )
                status = PacketStatus.DELIVERED  # nothing to do: it does not exist
            if status in (PacketStatus.VERIFIED, PacketStatus.UNVERIFIED):
                if status is PacketStatus.UNVERIFIED:
                    if not await self._verify(lane, packet):
                        return progressed
                    progressed = True
                if not await self._deliver(lane, packet):
                    return progressed
                status = PacketStatus.DELIVERED
            if status is PacketStatus.DELIVERED:
                pass
            elif status is PacketStatus.NILIFIED:
                log.warning(
                    "%s: nonce %d was nilified by the OApp's delegate; dropping it",
                    lane.name,
                    packet.nonce,
                )
            else:
                log.error(
                    "%s: nonce %d: another payload is verified under it; dropping it",
                    lane.name,
                    packet.nonce,
                )
            del lane.state.pending[key]
            self.state.save()
            progressed = True
        return progressed

    async def _on_source(self, lane: Lane, seen: Seen) -> bool:
        """The verifier's check: the packet's transaction is still on the source chain, mined
        CONFIRMATIONS deep, and emitted exactly this packet."""
        w3 = lane.src.w3

        async def receipt() -> Any:
            try:
                return await w3.eth.get_transaction_receipt(seen.tx_hash)  # type: ignore[arg-type]
            except TransactionNotFound:
                return None

        r = await self._read(receipt)
        if r is None or int(r["status"]) != 1:
            return False
        if int(r["blockNumber"]) > lane.head:
            return False
        for entry in r["logs"]:
            topics = entry["topics"]
            if (
                entry["address"].lower() == lane.src.side.endpoint.lower()
                and topics
                and _hex(topics[0]) == PACKET_SENT_TOPIC
            ):
                with contextlib.suppress(MalformedPacket):
                    if packet_from_log_data(bytes(entry["data"])).raw == seen.packet.raw:
                        return True
        return False

    async def _cursor_holds(self, lane: Lane) -> bool:
        """Whether the scanned block is still the source chain's block of that number."""
        if lane.state.scanned_hash is None or lane.state.scanned_to <= lane.state.start:
            return True
        current = await self._block_hash(lane.src.w3, lane.state.scanned_to)
        return current == lane.state.scanned_hash

    async def _block_hash(self, w3: AsyncWeb3, number: int) -> str | None:
        async def block() -> Any:
            try:
                return await w3.eth.get_block(number)
            except BlockNotFound:
                return None

        b = await self._read(block)
        return None if b is None else _hex(b["hash"])

    async def packet_status(self, dst: Chain, packet: Packet) -> PacketStatus:
        fns = dst.endpoint.functions
        args = (packet.receiver, packet.src_eid, packet.sender)
        stored = bytes(await self._read(lambda: fns.inboundPayloadHash(*args, packet.nonce).call()))
        if stored == packet.payload_hash:
            return PacketStatus.VERIFIED
        if stored == EMPTY_PAYLOAD_HASH:
            lazy = await self._read(lambda: fns.lazyInboundNonce(*args).call())
            return PacketStatus.DELIVERED if packet.nonce <= lazy else PacketStatus.UNVERIFIED
        if stored == NIL_PAYLOAD_HASH:
            return PacketStatus.NILIFIED
        return PacketStatus.CONFLICT

    # ---- the two roles ----
    async def _verify(self, lane: Lane, packet: Packet) -> bool:
        lib = lane.dst.lib
        if lib is None:
            # LayerZero's own DVNs verify on chains with its endpoint: only execute here.
            return False
        data = lib.encode_abi("validatePacket", args=[packet.raw])
        return await self._send(lane, packet, {"to": lib.address, "data": data}, "verify")

    async def _deliver(self, lane: Lane, packet: Packet) -> bool:
        ep = lane.dst.endpoint
        data = ep.encode_abi(
            "lzReceive", args=[packet.origin(), packet.receiver, packet.guid, packet.message, b""]
        )
        return await self._send(lane, packet, {"to": ep.address, "data": data}, "deliver")

    async def _send(self, lane: Lane, packet: Packet, tx: dict[str, Any], role: str) -> bool:
        what = _describe(packet)
        with _tracer.start_as_current_span(
            f"relayer.{role}",
            attributes={"lane": lane.name, "nonce": packet.nonce, "guid": packet.guid_hex},
        ):
            try:
                receipt = await lane.dst.sender.send(tx, f"{role} {lane.name}#{packet.nonce}")
            except TxRevertedError as exc:
                # refused by the destination (simulated, or mined and reverted): retry later;
                # the next round re-reads the endpoint first
                lane.failures += 1
                delay = self._backoff(lane)
                lane.retry_at = time.monotonic() + delay
                lane.last_error = f"{role} nonce {packet.nonce}: {exc.reason}"
                if role == "deliver":
                    _refused.add(1, {"lane": lane.name})
                log.warning(
                    "%s: %s of nonce %d (%s) refused: %s; retrying in %.1fs",
                    lane.name,
                    role,
                    packet.nonce,
                    what,
                    exc.reason,
                    delay,
                )
                return False
        lane.failures = 0
        lane.last_error = None
        if role == "verify":
            lane.verified += 1
            _verified.add(1, {"lane": lane.name})
        else:
            lane.delivered += 1
            _delivered.add(1, {"lane": lane.name})
        log.info(
            "%s: %s nonce %d guid %s (%s) in tx %s",
            lane.name,
            "verified" if role == "verify" else "delivered",
            packet.nonce,
            packet.guid_hex,
            what,
            _hex(receipt["transactionHash"]),
        )
        return True

    # ---- plumbing ----
    def _backoff(self, lane: Lane) -> float:
        n = max(lane.failures, 1)
        delay = min(self.config.backoff_max_s, self.config.backoff_initial_s * 2 ** (n - 1))
        return delay * (0.5 + random.random() / 2)

    async def _read(self, call: Callable[[], Awaitable[T]]) -> T:
        """`call()` (a fresh request each attempt), retried with exponential back-off and
        jitter on transient RPC errors."""
        async for attempt in AsyncRetrying(
            stop=stop_after_attempt(self.config.max_retries + 1),
            wait=wait_exponential_jitter(
                initial=self.config.backoff_initial_s, max=self.config.backoff_max_s
            ),
            retry=retry_if_exception(is_transient),
            before_sleep=_log_retry,
            reraise=True,
        ):
            with attempt:
                return await call()
        raise AssertionError("unreachable")


def _log_retry(state: RetryCallState) -> None:
    exc = state.outcome.exception() if state.outcome is not None else None
    log.warning("RPC read failed (%s: %s); retry %d", type(exc).__name__, exc, state.attempt_number)


def _describe(packet: Packet) -> str:
    try:
        m = BridgeMessage.decode(packet.message)
    except Exception:
        return f"{len(packet.message)}-byte message"
    return f"{BridgeMessage.KINDS.get(m.kind, m.kind)} {m.amount} to {m.account}"


def _hex(value: Any) -> str:
    return "0x" + bytes(value).hex() if isinstance(value, (bytes, bytearray)) else str(value)


async def _sleep(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), seconds)
