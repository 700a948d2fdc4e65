// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Origin} from "@layerzerolabs/lz-evm-protocol-v2/contracts/interfaces/ILayerZeroEndpointV2.sol";
import {PacketV1Codec} from "@layerzerolabs/lz-evm-protocol-v2/contracts/messagelib/libs/PacketV1Codec.sol";
import {EndpointV2} from "@layerzerolabs/lz-evm-protocol-v2/contracts/EndpointV2.sol";
import {SimpleMessageLib} from "@layerzerolabs/lz-evm-protocol-v2/contracts/messagelib/SimpleMessageLib.sol";
import {Fixture} from "./Fixture.sol";
import {Hevm} from "./Hevm.sol";
import {BridgeDeployer} from "../../script/BridgeDeployer.sol";
import {CollateralToken} from "../../src/tokens/CollateralToken.sol";
import {CollateralBridge} from "../../src/bridge/CollateralBridge.sol";
import {CollateralDepositor} from "../../src/bridge/CollateralDepositor.sol";

/// A remote token with a blacklist (as USDT has) and a choice of decimals.
contract TestRemoteToken is ERC20 {
    uint8 private immutable _decimals;
    mapping(address => bool) public blocked;

    constructor(uint8 d) ERC20("Remote USD", "rUSD") {
        _decimals = d;
    }

    function decimals() public view override returns (uint8) {
        return _decimals;
    }

    function mint(address to, uint256 amount) external {
        _mint(to, amount);
    }

    function setBlocked(address who, bool b) external {
        blocked[who] = b;
    }

    function _update(address from, address to, uint256 value) internal override {
        require(!blocked[to] && !blocked[from], "blocked");
        super._update(from, to, value);
    }
}

/// @notice Two LayerZero "chains" in one EVM: the protocol (Fixture) and the home bridge on
/// endpoint HOME, a CollateralDepositor on endpoint REMOTE, each endpoint with LayerZero's
/// SimpleMessageLib whose only verifier is `relayer`. `_relayAll` plays the relayer exactly as
/// `perpex relayer` does on two real chains: every PacketSent is verified on the destination
/// (validatePacket) and then delivered (EndpointV2.lzReceive).
abstract contract BridgeFixture is Fixture, BridgeDeployer {
    uint32 internal constant HOME = 31337;
    uint32 internal constant REMOTE = 31338;
    uint256 internal constant RESERVE = 1_000_000e18;
    bytes32 internal constant PACKET_SENT = keccak256("PacketSent(bytes,bytes,address)");

    address internal relayer = address(0x4E1A7E4);
    LocalLz internal home;
    LocalLz internal remote;
    CollateralBridge internal bridge;
    CollateralDepositor internal depositor;
    TestRemoteToken internal rtoken;

    struct Parsed {
        Origin origin;
        uint32 dstEid;
        address receiver;
        bytes32 guid;
        bytes message;
    }

    function setUp() public virtual override {
        super.setUp();
        home = _deployLocalLz(HOME, REMOTE, address(this), relayer);
        remote = _deployLocalLz(REMOTE, HOME, address(this), relayer);
        bridge = _deployHomeBridge(address(home.endpoint), vault, address(this));
        token.mint(address(this), RESERVE);
        _fundReserve(bridge, RESERVE);
        rtoken = _remoteToken();
        depositor = _deployDepositor(address(remote.endpoint), IERC20(address(rtoken)), HOME, address(this));
        _wireHome(bridge, REMOTE, address(depositor), rtoken.decimals(), DEFAULT_LZ_RECEIVE_GAS);
        _wireRemote(depositor, HOME, address(bridge), DEFAULT_LZ_RECEIVE_GAS);
        vm.deal(alice, 10 ether);
        vm.deal(bob, 10 ether);
        vm.deal(carol, 10 ether);
        vm.recordLogs();
    }

    function _remoteToken() internal virtual returns (TestRemoteToken) {
        return new TestRemoteToken(18);
    }

    // ---------------------------------------------------------------- traders

    /// `who` locks `amount` remote tokens for `account`; returns the packet (not yet relayed).
    function _deposit(address who, address account, uint256 amount) internal returns (bytes memory packet) {
        rtoken.mint(who, amount);
        vm.startPrank(who);
        rtoken.approve(address(depositor), amount);
        uint256 fee = depositor.quoteDeposit(amount, account, "").nativeFee;
        depositor.deposit{value: fee}(amount, account, "");
        vm.stopPrank();
        packet = _onlyPacket();
    }

    function _withdraw(address who, address recipient, uint256 amount) internal returns (bytes memory packet) {
        uint256 fee = bridge.quoteWithdraw(REMOTE, recipient, amount, "").nativeFee;
        vm.prank(who);
        bridge.withdrawTo{value: fee}(REMOTE, recipient, amount, "");
        packet = _onlyPacket();
    }

    // ---------------------------------------------------------------- the relayer's two roles

    function _packets() internal returns (bytes[] memory packets) {
        Hevm.Log[] memory logs = vm.getRecordedLogs();
        uint256 n;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics.length > 0 && logs[i].topics[0] == PACKET_SENT) ++n;
        }
        packets = new bytes[](n);
        n = 0;
        for (uint256 i; i < logs.length; ++i) {
            if (logs[i].topics.length > 0 && logs[i].topics[0] == PACKET_SENT) {
                (packets[n++],,) = abi.decode(logs[i].data, (bytes, bytes, address));
            }
        }
    }

    function _onlyPacket() internal returns (bytes memory) {
        bytes[] memory p = _packets();
        assertEq(p.length, 1, "one packet sent");
        return p[0];
    }

    function parse(bytes calldata packet) external pure returns (Parsed memory p) {
        p.origin = Origin(PacketV1Codec.srcEid(packet), PacketV1Codec.sender(packet), PacketV1Codec.nonce(packet));
        p.dstEid = PacketV1Codec.dstEid(packet);
        p.receiver = PacketV1Codec.receiverB20(packet);
        p.guid = PacketV1Codec.guid(packet);
        p.message = PacketV1Codec.message(packet);
    }

    function _dst(uint32 eid) internal view returns (LocalLz memory) {
        return eid == HOME ? home : remote;
    }

    /// The verifier role: the destination's message library records the payload hash.
    function _verify(bytes memory packet) internal {
        Parsed memory p = this.parse(packet);
        vm.prank(relayer);
        _dst(p.dstEid).lib.validatePacket(packet);
    }

    /// The executor role: the destination endpoint delivers a verified packet.
    function _deliver(bytes memory packet) internal {
        _deliver(this.parse(packet));
    }

    /// (no external call before the endpoint's: for vm.expectRevert)
    function _deliver(Parsed memory p) internal {
        _dst(p.dstEid).endpoint.lzReceive(p.origin, p.receiver, p.guid, p.message, "");
    }

    function _relay(bytes memory packet) internal {
        _verify(packet);
        _deliver(packet);
    }

    function _relayAll() internal returns (uint256 n) {
        bytes[] memory p = _packets();
        for (uint256 i; i < p.length; ++i) _relay(p[i]);
        return p.length;
    }

    // ---------------------------------------------------------------- books

    /// Both ends balance: the depositor holds what it owes, the home reserve plus what is
    /// locked for it remotely equals what the reserve was funded with (all delivered), and the
    /// Vault's balance equals its buckets.
    function _assertBridgeBooks(uint256 funded) internal view {
        assertEq(
            rtoken.balanceOf(address(depositor)),
            depositor.totalLocked() + depositor.totalDeferred(),
            "depositor balance != locked + deferred"
        );
        assertEq(bridge.outstanding(REMOTE), depositor.totalLocked() * depositor.scale(), "outstanding != locked");
        assertEq(bridge.reserve() + bridge.outstanding(REMOTE), funded, "reserve + outstanding != funded");
        _assertSolvent();
    }
}
