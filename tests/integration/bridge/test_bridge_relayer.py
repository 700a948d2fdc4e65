"""A deposit and a withdrawal cross between two real anvils through `perpex relayer`, which is
SIGKILLed mid-delivery (a verification waiting in the mempool, then a delivery waiting there)
and restarted: each transfer is applied exactly once and the relayer never sends a transaction
it did not need (its nonces count them). Mining is switched off on the destination chain so
the kill lands while the relayer's transaction is in flight, not before or after it.
"""

from __future__ import annotations

import subprocess
import sys

import httpx
from bridge_support import (
    LZ_RECEIVE,
    RELAYER_ADDRESS,
    VALIDATE_PACKET,
    BridgeEnv,
    environ,
    nonce,
    pending_input,
    rpc,
    sigkill,
    wait_for,
)
from web3 import Web3

from services.relayer.chains import deployment_key
from services.relayer.packets import Packet, packet_from_log_data
from services.relayer.relay import PACKET_SENT_TOPIC
from services.relayer.state import RelayerState, Seen

WAD = 10**18


def _payload_verified(env: BridgeEnv, w3: Web3, nonce_: int) -> bool:
    """Whether the destination endpoint holds a verified payload for the bridge's packet."""
    b = env.deployment.bridge
    assert b is not None
    ep = env.bridge.home_endpoint if w3 is env.home else env.bridge.remote_endpoint
    src = b.remote if w3 is env.home else b.home
    dst = b.home if w3 is env.home else b.remote
    sender = b"\x00" * 12 + bytes.fromhex(src.app[2:])
    stored = ep.functions.inboundPayloadHash(dst.app, src.eid, sender, nonce_).call()
    return bytes(stored) != b"\x00" * 32


def _kill_mid_delivery(env: BridgeEnv, w3: Web3, nonce_: int) -> None:
    """Destination mining off: the relayer's verification waits in the mempool, it is killed;
    the block is mined; a second relayer's delivery waits in the mempool, it is killed too; a
    third relayer starts while that delivery is still pending, and only then is it mined."""
    rpc(w3, "evm_setAutomine", [False])
    try:
        first = env.relayer("relayer-1")
        selector = wait_for(lambda: pending_input(w3, RELAYER_ADDRESS), 30, "a verification", first)
        assert selector[:4] == VALIDATE_PACKET
        sigkill(first)
        assert not _payload_verified(env, w3, nonce_), "not mined yet"
        rpc(w3, "evm_mine", [])
        assert _payload_verified(env, w3, nonce_), "the killed relayer's verification"

        second = env.relayer("relayer-2")
        selector = wait_for(lambda: pending_input(w3, RELAYER_ADDRESS), 30, "a delivery", second)
        assert selector[:4] == LZ_RECEIVE, (
            "verified already: the restart delivers, never re-verifies"
        )
        sigkill(second)

        third = env.relayer("relayer-3")
        # up and waiting for the previous run's delivery still in the mempool
        wait_for(lambda: _alive(third.health_port), 30, "relayer-3's probes", third)
    finally:
        rpc(w3, "evm_setAutomine", [True])
    rpc(w3, "evm_mine", [])
    try:
        wait_for(lambda: third.ready(), 30, "relayer-3 ready", third)
        wait_for(lambda: _idle(third.health_port), 30, "relayer-3 idle", third)
    finally:
        assert third.stop() == 0, third.tail()


def _alive(port: int) -> bool:
    try:
        return httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=1).is_success
    except httpx.HTTPError:
        return False


def _idle(port: int) -> bool:
    try:
        status = httpx.get(f"http://127.0.0.1:{port}/status", timeout=1).json()
    except (httpx.HTTPError, ValueError):
        return False
    lanes = [status.get(k) for k in ("remote->home", "home->remote")]
    return all(
        lane and lane["pending"] == 0 and lane["scanned_to"] >= lane["source_head"]
        for lane in lanes
    )


def test_deposit_and_withdrawal_cross_exactly_once_through_relayer_kills(
    bridged: BridgeEnv,
) -> None:
    env = bridged
    trader = env.home.eth.accounts[3]
    recipient = env.remote.eth.accounts[4]
    relayer_home, relayer_remote = (
        nonce(env.home, RELAYER_ADDRESS),
        nonce(env.remote, RELAYER_ADDRESS),
    )

    # ---- deposit: remote -> home, relayer killed twice mid-delivery
    sent = env.bridge.deposit(trader, 1000 * WAD)
    assert env.bridge.free_collateral(trader) == 0
    _kill_mid_delivery(env, env.home, sent.nonce)
    assert env.bridge.free_collateral(trader) == 1000 * WAD, "credited"
    assert env.bridge.deliveries(sent.guid) == 1, "credited exactly once"
    assert nonce(env.home, RELAYER_ADDRESS) == relayer_home + 2, "one verification, one delivery"

    # ---- withdrawal: home -> remote, the same kills on the other lane
    before = env.bridge.remote_balance(recipient)
    sent = env.bridge.withdraw(trader, 400 * WAD, recipient)
    assert env.bridge.free_collateral(trader) == 600 * WAD, "debited on the home chain at once"
    _kill_mid_delivery(env, env.remote, sent.nonce)
    assert env.bridge.remote_balance(recipient) == before + 400 * WAD, "released"
    assert env.bridge.deliveries(sent.guid) == 1, "released exactly once"
    assert nonce(env.remote, RELAYER_ADDRESS) == relayer_remote + 2

    # ---- the state file lost: a rescan from the deployment finds everything delivered
    env.state_file.unlink()
    home_n, remote_n = nonce(env.home, RELAYER_ADDRESS), nonce(env.remote, RELAYER_ADDRESS)
    proc = subprocess.run(
        [sys.executable, "-m", "perpex_cli.main", "relayer", "--until-idle"],
        env={**environ(), **env.relayer_env(), "HEALTH_PORT": "0"},
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert (nonce(env.home, RELAYER_ADDRESS), nonce(env.remote, RELAYER_ADDRESS)) == (
        home_n,
        remote_n,
    ), "nothing sent twice"
    assert env.bridge.free_collateral(trader) == 600 * WAD
    assert env.bridge.remote_balance(recipient) == before + 400 * WAD


def test_refused_delivery_is_retried_until_it_applies_once(bridged: BridgeEnv) -> None:
    """The home bridge's reserve runs dry: the credit reverts, the relayer backs off and
    retries, the reserve is topped up, the credit applies once."""
    env = bridged
    trader = env.home.eth.accounts[5]
    owner = env.deployment.deployer
    bridge = env.bridge.bridge
    reserve = int(bridge.functions.reserve().call())
    # under governance the timelock owns the bridge (the deploy flow's proposal accepted it):
    # act as the timelock here, as an executed proposal would
    timelock = bridge.functions.owner().call()
    assert env.deployment.governance is not None
    assert timelock == env.deployment.governance.timelock
    env.home.provider.make_request("anvil_impersonateAccount", [timelock])
    env.home.provider.make_request("anvil_setBalance", [timelock, hex(10**18)])
    bridge.functions.withdrawReserve(reserve, owner).transact({"from": timelock})
    env.home.provider.make_request("anvil_stopImpersonatingAccount", [timelock])
    relayer = env.relayer("relayer-dry")
    try:
        sent = env.bridge.deposit(trader, 250 * WAD)
        wait_for(lambda: "ReserveInsufficient" in relayer.tail(50), 30, "a refusal", relayer)
        assert env.bridge.free_collateral(trader) == 0
        erc20 = env.bridge.token.abi
        home_token = env.home.eth.contract(address=bridge.functions.token().call(), abi=erc20)
        home_token.functions.approve(bridge.address, reserve).transact({"from": owner})
        bridge.functions.fundReserve(reserve).transact({"from": owner})
        wait_for(lambda: env.bridge.credited(sent.guid), 60, "the credit after the top-up", relayer)
    finally:
        assert relayer.stop() == 0, relayer.tail()
    assert env.bridge.free_collateral(trader) == 250 * WAD
    assert env.bridge.deliveries(sent.guid) == 1


def test_stale_state_never_verifies_a_packet_the_source_chain_does_not_have(
    bridged: BridgeEnv,
) -> None:
    """A state file from another run (a fresh chain at the same addresses, or a deep reorg):
    a packet it lists that the source chain does not have is dropped, never verified, and a
    cursor whose block the chain does not have is rescanned from the deployment."""
    env = bridged
    trader = env.home.eth.accounts[7]
    sent = env.bridge.deposit(trader, 70 * WAD)
    real = _packet_of(env, sent.tx_hash)
    # the same path and the next nonce, a payload the remote chain never emitted
    forged = Packet.decode(
        real.raw[:1] + (real.nonce + 1).to_bytes(8, "big") + real.raw[9:81]
        + b"\x42" * 32 + real.message[:64] + (10**30).to_bytes(32, "big")
    )  # fmt: skip
    state = RelayerState.load(
        env.state_file,
        deployment_key(env.deployment.bridge),
        _starts(env),  # type: ignore[arg-type]
    )
    lane = state.lanes["remote->home"]
    lane.scanned_to = env.remote.eth.block_number  # "already scanned", hash unknown
    lane.scanned_hash = None
    lane.pending = {
        real.guid_hex: Seen(real, sent.tx_hash, sent.block_number),
        forged.guid_hex: Seen(forged, "0x" + "ee" * 32, sent.block_number),
    }
    other = state.lanes["home->remote"]
    other.scanned_to, other.scanned_hash = 10**6, "0x" + "11" * 32  # a block this chain lacks
    state.save()
    before = nonce(env.home, RELAYER_ADDRESS)
    log_path = env.workdir / "relayer-stale.log"
    with open(log_path, "w") as log:
        proc = subprocess.run(
            [sys.executable, "-m", "perpex_cli.main", "relayer", "--until-idle"],
            env={**environ(), **env.relayer_env(), "HEALTH_PORT": "0"},
            stdout=log, stderr=subprocess.STDOUT, timeout=60,
        )  # fmt: skip
    output = log_path.read_text()
    assert proc.returncode == 0, output[-3000:]
    assert "no longer on the source chain" in output
    assert "rescanning from block" in output
    assert env.bridge.credited(sent.guid) and env.bridge.deliveries(sent.guid) == 1
    assert nonce(env.home, RELAYER_ADDRESS) == before + 2, "the real packet only"
    assert env.bridge.free_collateral(trader) == 70 * WAD


def _packet_of(env: BridgeEnv, tx_hash: str) -> Packet:
    receipt = env.remote.eth.get_transaction_receipt(tx_hash)  # type: ignore[arg-type]
    for entry in receipt["logs"]:
        if entry["topics"] and "0x" + bytes(entry["topics"][0]).hex() == PACKET_SENT_TOPIC:
            return packet_from_log_data(bytes(entry["data"]))
    raise AssertionError("no PacketSent in the deposit")


def _starts(env: BridgeEnv) -> dict[str, int]:
    b = env.deployment.bridge
    assert b is not None
    return {"remote->home": b.remote.start_block - 1, "home->remote": b.home.start_block - 1}
