// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Errors} from "@layerzerolabs/lz-evm-protocol-v2/contracts/libs/Errors.sol";
import {IOAppCore} from "@layerzerolabs/oapp-evm/contracts/oapp/interfaces/IOAppCore.sol";
import {OAppReceiver} from "@layerzerolabs/oapp-evm/contracts/oapp/OAppReceiver.sol";
import {Origin} from "@layerzerolabs/lz-evm-protocol-v2/contracts/interfaces/ILayerZeroEndpointV2.sol";
import {SimpleMessageLib} from "@layerzerolabs/lz-evm-protocol-v2/contracts/messagelib/SimpleMessageLib.sol";
import {BridgeFixture, TestRemoteToken} from "./base/BridgeFixture.sol";
import {Vault} from "../src/core/Vault.sol";
import {CollateralBridge} from "../src/bridge/CollateralBridge.sol";
import {CollateralDepositor} from "../src/bridge/CollateralDepositor.sol";
import {OrderedBridgeApp} from "../src/bridge/OrderedBridgeApp.sol";
import {BridgeMessages} from "../src/bridge/BridgeMessages.sol";

contract BridgeTest is BridgeFixture {
    // ---------------------------------------------------------------- the happy path

    function test_deposit_creditsFreeCollateralOnHome() public {
        bytes memory packet = _deposit(alice, alice, 1000e18);
        assertEq(rtoken.balanceOf(address(depositor)), 1000e18, "locked on remote");
        assertEq(vault.freeCollateral(alice), 0, "nothing credited before delivery");
        _relay(packet);
        assertEq(vault.freeCollateral(alice), 1000e18, "credited");
        assertEq(bridge.outstanding(REMOTE), 1000e18, "outstanding");
        assertEq(bridge.reserve(), RESERVE - 1000e18, "reserve paid the credit");
        _assertBridgeBooks(RESERVE);
    }

    function test_deposit_forAnotherAccount_andTradeWithIt() public {
        _relay(_deposit(bob, alice, 5000e18));
        assertEq(vault.freeCollateral(bob), 0, "sender not credited");
        assertEq(vault.freeCollateral(alice), 5000e18, "account credited");
        uint256 id = _open(alice, ETH, true, 1000e18, 5e18);
        _close(alice, id);
        _assertBridgeBooks(RESERVE);
    }

    function test_withdraw_releasesOnRemote() public {
        _relay(_deposit(alice, alice, 1000e18));
        bytes memory packet = _withdraw(alice, carol, 400e18);
        assertEq(vault.freeCollateral(alice), 600e18, "debited at once");
        assertEq(rtoken.balanceOf(carol), 0, "not released before delivery");
        _relay(packet);
        assertEq(rtoken.balanceOf(carol), 400e18, "released to the recipient");
        assertEq(depositor.totalLocked(), 600e18, "still locked");
        assertEq(bridge.reserve(), RESERVE - 600e18, "the debit went back into the reserve");
        _assertBridgeBooks(RESERVE);
    }

    function test_roundTrip_afterTradingProfit_paysFromThePool() public {
        // bob bridges in and the pool pays alice a profit in home collateral: both may leave
        // through the bridge while bridged-in collateral is locked on the remote side.
        _relay(_deposit(bob, bob, 10_000e18));
        _relay(_deposit(alice, alice, 1000e18));
        uint256 id = _open(alice, ETH, true, 900e18, 10e18);
        vm.roll(block.number + 1);
        _fund(carol, 210_000e18);
        _open(carol, ETH, true, 200_000e18, 10e18); // pushes the mark ~2% up
        _setPrice(ethFeed, 2040e18);
        vm.roll(block.number + 1);
        _close(alice, id);
        uint256 free = vault.freeCollateral(alice);
        assertGt(free, 1000e18, "alice profited");
        uint256 amount = free / 1e18 * 1e18;
        _relay(_withdraw(alice, alice, amount));
        assertEq(rtoken.balanceOf(alice), amount, "profit released on the remote chain");
        _assertBridgeBooks(RESERVE);
    }

    // ---------------------------------------------------------------- replay, peers, order

    function test_replay_isRejected_andCreditsOnce() public {
        bytes memory packet = _deposit(alice, alice, 1000e18);
        _relay(packet);
        Parsed memory p = this.parse(packet);
        // delivering the same packet again: the endpoint deleted its payload hash
        vm.expectPartialRevert(Errors.LZ_PayloadHashNotFound.selector);
        home.endpoint.lzReceive(p.origin, p.receiver, p.guid, p.message, "");
        // verifying it again: the nonce is behind the path's delivered nonce
        vm.prank(relayer);
        vm.expectRevert(Errors.LZ_PathNotVerifiable.selector);
        home.lib.validatePacket(packet);
        assertEq(vault.freeCollateral(alice), 1000e18, "credited once");
        _assertBridgeBooks(RESERVE);
    }

    function test_reordering_isRejected() public {
        bytes memory first = _deposit(alice, alice, 100e18);
        bytes memory second = _deposit(bob, bob, 200e18);
        _verify(first);
        _verify(second);
        // both verified: the endpoint alone would let nonce 2 overtake nonce 1
        Parsed memory p2 = this.parse(second);
        vm.expectRevert(abi.encodeWithSelector(OrderedBridgeApp.NonceOutOfOrder.selector, REMOTE, 1, 2));
        _deliver(p2);
        assertEq(bridge.nextNonce(REMOTE, _b32(address(depositor))), 1, "still waiting for nonce 1");
        _deliver(first);
        _deliver(second);
        assertEq(vault.freeCollateral(alice), 100e18, "alice");
        assertEq(vault.freeCollateral(bob), 200e18, "bob");
        _assertBridgeBooks(RESERVE);
    }

    function test_unknownPeer_cannotCredit() public {
        // an attacker's own depositor (same code, a worthless token) on the remote endpoint,
        // pointed at the home bridge
        TestRemoteToken junk = new TestRemoteToken(18);
        CollateralDepositor fake =
            new CollateralDepositor(address(remote.endpoint), IERC20(address(junk)), HOME, carol);
        vm.prank(carol);
        fake.setPeer(HOME, _b32(address(bridge)));
        junk.mint(carol, 1e30);
        vm.startPrank(carol);
        junk.approve(address(fake), 1e24);
        fake.deposit{value: fake.quoteDeposit(1e24, carol, "").nativeFee}(1e24, carol, "");
        vm.stopPrank();
        bytes memory packet = _onlyPacket();
        // the home endpoint refuses to open a path from a sender that is not the bridge's peer
        vm.prank(relayer);
        vm.expectRevert(Errors.LZ_PathNotInitializable.selector);
        home.lib.validatePacket(packet);
        assertEq(vault.freeCollateral(carol), 0, "nothing credited");
    }

    function test_peerReplaced_oldPeerVerifiedPacket_isRejected() public {
        _relay(_deposit(alice, alice, 100e18)); // the path is open
        bytes memory packet = _deposit(alice, alice, 100e18);
        _verify(packet);
        // the owner moves the peer before the packet is delivered
        bridge.setRemote(REMOTE, _b32(address(0xBEEF)), 18);
        Parsed memory p = this.parse(packet);
        vm.expectRevert(abi.encodeWithSelector(IOAppCore.OnlyPeer.selector, REMOTE, _b32(address(depositor))));
        _deliver(p);
        assertEq(vault.freeCollateral(alice), 100e18, "only the first credit");
    }

    function test_onlyTheEndpointDelivers_onlyTheRelayerVerifies() public {
        bytes memory packet = _deposit(alice, alice, 100e18);
        Parsed memory p = this.parse(packet);
        vm.prank(carol);
        vm.expectRevert(abi.encodeWithSelector(OAppReceiver.OnlyEndpoint.selector, carol));
        bridge.lzReceive(p.origin, p.guid, p.message, carol, "");
        vm.prank(carol);
        vm.expectRevert(SimpleMessageLib.OnlyWhitelistCaller.selector);
        home.lib.validatePacket(packet);
        // not verified: the endpoint refuses to deliver it
        vm.expectRevert(abi.encodeWithSelector(Errors.LZ_InvalidNonce.selector, 1));
        home.endpoint.lzReceive(p.origin, p.receiver, p.guid, p.message, "");
        // a forged message under a verified header does not match the verified hash
        _verify(packet);
        bytes memory forged = BridgeMessages.encode(BridgeMessages.CREDIT, carol, 1e30);
        vm.expectPartialRevert(Errors.LZ_PayloadHashNotFound.selector);
        home.endpoint.lzReceive(p.origin, p.receiver, p.guid, forged, "");
        assertEq(vault.freeCollateral(carol), 0, "carol credited nothing");
    }

    // ---------------------------------------------------------------- failed delivery, retry

    function test_failedDelivery_isRetried_andNeverCreditsTwice() public {
        bridge.withdrawReserve(RESERVE, address(this)); // the reserve runs dry
        bytes memory packet = _deposit(alice, alice, 1000e18);
        _verify(packet);
        Parsed memory p = this.parse(packet);
        vm.expectRevert(abi.encodeWithSelector(CollateralBridge.ReserveInsufficient.selector, 0, 1000e18));
        _deliver(p);
        // the revert rolled everything back: still verified, still undelivered
        assertEq(vault.freeCollateral(alice), 0, "not credited");
        assertEq(bridge.nextNonce(REMOTE, _b32(address(depositor))), 1, "nonce not consumed");
        assertEq(
            home.endpoint.inboundPayloadHash(address(bridge), REMOTE, p.origin.sender, 1),
            keccak256(abi.encodePacked(p.guid, p.message)),
            "payload still verified"
        );
        // a later deposit waits behind it
        bytes memory later = _deposit(bob, bob, 10e18);
        _verify(later);
        Parsed memory pl = this.parse(later);
        vm.expectRevert(abi.encodeWithSelector(OrderedBridgeApp.NonceOutOfOrder.selector, REMOTE, 1, 2));
        _deliver(pl);
        // topped up, the executor's retry credits once; a second retry is refused
        token.approve(address(bridge), RESERVE);
        bridge.fundReserve(RESERVE);
        _deliver(packet);
        _deliver(later);
        vm.expectPartialRevert(Errors.LZ_PayloadHashNotFound.selector);
        _deliver(p);
        assertEq(vault.freeCollateral(alice), 1000e18, "credited exactly once");
        assertEq(vault.freeCollateral(bob), 10e18, "the later one too");
        _assertBridgeBooks(RESERVE);
    }

    function test_refusedRelease_isKeptForTheRecipient_andDoesNotBlockThePath() public {
        _relay(_deposit(alice, alice, 1000e18));
        rtoken.setBlocked(carol, true);
        _relay(_withdraw(alice, carol, 300e18)); // delivered, not paid: kept for carol
        assertEq(depositor.deferred(carol), 300e18, "deferred");
        _relay(_withdraw(alice, alice, 100e18)); // the next release goes through
        assertEq(rtoken.balanceOf(alice), 100e18, "path not blocked");
        _assertBridgeBooks(RESERVE);
        vm.prank(carol);
        depositor.claimDeferred(bob);
        assertEq(rtoken.balanceOf(bob), 300e18, "claimed to another address");
        assertEq(depositor.totalDeferred(), 0, "nothing deferred");
        vm.prank(carol);
        vm.expectRevert(CollateralDepositor.NothingToClaim.selector);
        depositor.claimDeferred(bob);
        _assertBridgeBooks(RESERVE);
    }

    // ---------------------------------------------------------------- withdrawals

    function test_withdraw_neverExceedsWhatIsLockedRemotely() public {
        _relay(_deposit(alice, alice, 1000e18));
        _fund(bob, 50_000e18); // home-chain collateral
        uint256 fee = bridge.quoteWithdraw(REMOTE, bob, 1001e18, "").nativeFee;
        vm.prank(bob);
        vm.expectRevert(abi.encodeWithSelector(CollateralBridge.ExceedsRemoteLiquidity.selector, 1000e18, 1001e18));
        bridge.withdrawTo{value: fee}(REMOTE, bob, 1001e18, "");
        // what is locked may leave, first come first served
        _relay(_withdraw(bob, bob, 1000e18));
        assertEq(rtoken.balanceOf(bob), 1000e18, "bob took the remote liquidity");
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(CollateralBridge.ExceedsRemoteLiquidity.selector, 0, 1e18));
        bridge.withdrawTo{value: fee}(REMOTE, alice, 1e18, "");
        // alice keeps her collateral on the home chain and can still withdraw it there
        vm.prank(alice);
        vault.withdraw(1000e18);
        _assertBridgeBooks(RESERVE);
    }

    function test_withdraw_takesOnlyTheCallersFreeCollateral() public {
        _relay(_deposit(alice, alice, 1000e18));
        uint256 fee = bridge.quoteWithdraw(REMOTE, carol, 1e18, "").nativeFee;
        vm.prank(carol);
        vm.expectRevert(abi.encodeWithSelector(Vault.InsufficientFreeCollateral.selector, 0, 1e18));
        bridge.withdrawTo{value: fee}(REMOTE, carol, 1e18, "");
        // locked margin is not free collateral
        _open(alice, ETH, true, 900e18, 2e18);
        vm.prank(alice);
        vm.expectPartialRevert(Vault.InsufficientFreeCollateral.selector);
        bridge.withdrawTo{value: fee}(REMOTE, alice, 500e18, "");
    }

    function test_withdraw_unknownRemote_andZeroes() public {
        _relay(_deposit(alice, alice, 1000e18));
        vm.startPrank(alice);
        vm.expectRevert(abi.encodeWithSelector(CollateralBridge.UnknownRemote.selector, 999));
        bridge.withdrawTo(999, alice, 1e18, "");
        vm.expectRevert(OrderedBridgeApp.ZeroAmount.selector);
        bridge.withdrawTo(REMOTE, alice, 0, "");
        vm.expectRevert(OrderedBridgeApp.ZeroAddress.selector);
        bridge.withdrawTo(REMOTE, address(0), 1e18, "");
        vm.stopPrank();
        vm.expectRevert(OrderedBridgeApp.ZeroAddress.selector);
        depositor.deposit(1, address(0), "");
    }

    function test_withdraw_feeIsRequired_excessRefunded() public {
        _relay(_deposit(alice, alice, 1000e18));
        uint256 fee = bridge.quoteWithdraw(REMOTE, alice, 1e18, "").nativeFee;
        assertGt(fee, 0, "the library charges a fee");
        vm.prank(alice);
        vm.expectPartialRevert(Errors.LZ_InsufficientFee.selector);
        bridge.withdrawTo{value: fee - 1}(REMOTE, alice, 1e18, "");
        uint256 before = alice.balance;
        vm.prank(alice);
        bridge.withdrawTo{value: fee + 1 ether}(REMOTE, alice, 1e18, "");
        assertEq(before - alice.balance, fee, "excess refunded");
    }

    // ---------------------------------------------------------------- access control

    function test_vaultHook_onlyTheBridge_setOnce() public {
        _fund(alice, 1000e18);
        vm.prank(carol);
        vm.expectRevert(Vault.OnlyBridge.selector);
        vault.withdrawForBridge(alice, 1000e18);
        vm.expectRevert(Vault.BridgeAlreadySet.selector);
        vault.setBridge(carol);
        vm.prank(carol);
        vm.expectPartialRevert(bytes4(keccak256("OwnableUnauthorizedAccount(address)")));
        bridge.setRemote(REMOTE, _b32(carol), 18);
        vm.expectRevert(CollateralBridge.UseSetRemote.selector);
        bridge.setPeer(REMOTE, _b32(carol));
        vm.prank(carol);
        vm.expectPartialRevert(bytes4(keccak256("OwnableUnauthorizedAccount(address)")));
        bridge.withdrawReserve(1, carol);
    }

    // ---------------------------------------------------------------- an endpoint we do not trust

    function test_ownNonceGuard_rejectsReplayEvenFromTheEndpoint() public {
        // If the endpoint (or a message library it trusts) ever delivered a packet twice, the
        // bridge's own per-path nonce still refuses it.
        bytes memory packet = _deposit(alice, alice, 100e18);
        _relay(packet);
        Parsed memory p = this.parse(packet);
        vm.prank(address(home.endpoint));
        vm.expectRevert(abi.encodeWithSelector(OrderedBridgeApp.NonceOutOfOrder.selector, REMOTE, 2, 1));
        bridge.lzReceive(p.origin, p.guid, p.message, address(this), "");
        // and a message of the wrong kind from the peer is refused
        Origin memory next = Origin(REMOTE, _b32(address(depositor)), 2);
        bytes memory release = BridgeMessages.encode(BridgeMessages.RELEASE, alice, 1);
        vm.prank(address(home.endpoint));
        vm.expectRevert(abi.encodeWithSelector(OrderedBridgeApp.UnexpectedMessage.selector, 2));
        bridge.lzReceive(next, bytes32(0), release, address(this), "");
        vm.prank(address(home.endpoint));
        vm.expectRevert(abi.encodeWithSelector(BridgeMessages.MalformedMessage.selector, 3));
        bridge.lzReceive(next, bytes32(0), hex"010203", address(this), "");
        // a release larger than what is locked is refused on the remote side
        Origin memory fromHome = Origin(HOME, _b32(address(bridge)), 1);
        bytes memory tooMuch = BridgeMessages.encode(BridgeMessages.RELEASE, alice, 101e18);
        vm.prank(address(remote.endpoint));
        vm.expectRevert(abi.encodeWithSelector(CollateralDepositor.InsufficientLocked.selector, 100e18, 101e18));
        depositor.lzReceive(fromHome, bytes32(0), tooMuch, address(this), "");
    }

    // ---------------------------------------------------------------- conservation, fuzzed

    bytes[] internal queue;
    mapping(address => uint256) internal minted;

    function testFuzz_bridgeBooksBalance(uint256 seed) public {
        address[3] memory who = [alice, bob, carol];
        for (uint256 i; i < 12; ++i) {
            seed = uint256(keccak256(abi.encode(seed, i)));
            address t = who[seed % 3];
            uint256 op = (seed >> 8) % 4;
            uint256 amount = bound(seed >> 16, 1, 5000) * 1e18;
            if (op <= 1) {
                queue.push(_deposit(t, t, amount));
                minted[t] += amount;
            } else if (op == 2) {
                uint256 free = vault.freeCollateral(t);
                uint256 out = bridge.outstanding(REMOTE);
                uint256 a = amount < free ? amount : free;
                a = a < out ? a : out;
                if (a != 0) queue.push(_withdraw(t, t, a));
            } else {
                _relayQueue();
            }
            _assertSolvent();
        }
        _relayQueue();
        _assertBridgeBooks(RESERVE);
        assertEq(
            rtoken.totalSupply(),
            rtoken.balanceOf(address(depositor)) + rtoken.balanceOf(alice) + rtoken.balanceOf(bob)
                + rtoken.balanceOf(carol),
            "remote tokens accounted"
        );
        assertEq(
            vault.freeCollateral(alice) + vault.freeCollateral(bob) + vault.freeCollateral(carol),
            bridge.outstanding(REMOTE),
            "every credit is backed by a lock"
        );
        // nobody ends with more than it brought: remote tokens plus home collateral
        for (uint256 i; i < 3; ++i) {
            address t = who[i];
            assertEq(rtoken.balanceOf(t) + vault.freeCollateral(t), minted[t], "a trader's total changed");
        }
    }

    function _relayQueue() internal {
        for (uint256 i; i < queue.length; ++i) _relay(queue[i]);
        delete queue;
    }

    function _b32(address a) internal pure returns (bytes32) {
        return bytes32(uint256(uint160(a)));
    }
}

/// A remote token with 6 decimals (USDT's): credits scale to WAD, withdrawals must be whole
/// token units.
contract BridgeSixDecimalsTest is BridgeFixture {
    function _remoteToken() internal override returns (TestRemoteToken) {
        return new TestRemoteToken(6);
    }

    function test_sixDecimals_scaleBothWays() public {
        _relay(_deposit(alice, alice, 1500e6));
        assertEq(vault.freeCollateral(alice), 1500e18, "credited in WAD");
        uint256 fee = bridge.quoteWithdraw(REMOTE, alice, 1e18 + 1, "").nativeFee;
        vm.prank(alice);
        vm.expectRevert(abi.encodeWithSelector(CollateralBridge.AmountNotRepresentable.selector, 1e18 + 1, 1e12));
        bridge.withdrawTo{value: fee}(REMOTE, alice, 1e18 + 1, "");
        _relay(_withdraw(alice, alice, 500.5e18));
        assertEq(rtoken.balanceOf(alice), 500.5e6, "released in token units");
        _assertBridgeBooks(RESERVE);
    }
}
