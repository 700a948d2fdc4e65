// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {IPositionManager} from "../src/interfaces/IPerpEx.sol";
import {PositionManager} from "../src/core/PositionManager.sol";

/// Funding accrues per second at the rate the last update set; an update only sets the next rate.
contract FundingTest is Fixture {
    function setUp() public override {
        super.setUp();
        for (uint256 i; i < 2; ++i) {
            _fund(alice, 1_000_000e18);
            _fund(bob, 1_000_000e18);
            _fund(carol, 1_000_000e18);
        }
    }

    function test_updateFundingRate_revertsBeforeInterval() public {
        uint256 next = pm.nextFundingTime(ETH);
        assertEq(next, T0 + 8 hours, "next");
        vm.warp(next - 1);
        vm.expectRevert(abi.encodeWithSelector(PositionManager.FundingTooEarly.selector, ETH, next));
        pm.updateFundingRate(ETH);
    }

    function test_updateFundingRate_revertsUnknownMarket() public {
        vm.expectRevert(abi.encodeWithSelector(PositionManager.UnknownMarket.selector, bytes32(uint256(1))));
        pm.updateFundingRate(bytes32(uint256(1)));
    }

    function test_updateFundingRate_oncePerInterval() public {
        vm.warp(T0 + 8 hours);
        vm.prank(carol); // anyone
        pm.updateFundingRate(ETH);
        assertEq(pm.lastFundingTime(ETH), T0 + 8 hours, "last");
        assertEq(pm.nextFundingTime(ETH), T0 + 16 hours, "next");
        vm.expectRevert(abi.encodeWithSelector(PositionManager.FundingTooEarly.selector, ETH, T0 + 16 hours));
        pm.updateFundingRate(ETH);
        vm.warp(T0 + 16 hours - 1);
        vm.expectRevert(abi.encodeWithSelector(PositionManager.FundingTooEarly.selector, ETH, T0 + 16 hours));
        pm.updateFundingRate(ETH);
        vm.warp(T0 + 16 hours);
        pm.updateFundingRate(ETH);
        // a late update counts from when it happened
        vm.warp(T0 + 30 hours);
        pm.updateFundingRate(ETH);
        assertEq(pm.nextFundingTime(ETH), T0 + 38 hours, "next after a late update");
    }

    /// Push the ETH mark above the index and hold it for one interval; returns the rate set.
    function _premiumPeriod() internal returns (int256 rate, uint256 mark) {
        _open(alice, ETH, true, 50_000e18, 10e18); // 500k notional: mark ~ +0.5%
        mark = pm.markPrice(ETH);
        vm.warp(T0 + 8 hours);
        rate = (int256(mark) - int256(2000e18)) * 1e18 * int256(8 hours) / (int256(2000e18) * 1 days);
        _setPrice(ethFeed, 2000e18); // keep the feed fresh; same level
    }

    function test_rate_markAboveIndex_setsPositiveSpeedFromNowOn() public {
        (int256 expected, uint256 mark) = _premiumPeriod();
        (int256 preview, uint256 pMark, uint256 pIndex) = pm.previewFundingRate(ETH);
        // TWAPs over [T0, T0 + 8h]: the mark was `mark` for the whole window (the trade happened at T0)
        assertEq(pMark, mark, "mark twap");
        assertEq(pIndex, 2000e18, "index twap");
        assertEq(preview, expected, "rate formula");
        assertGt(expected, int256(0), "positive");

        int256 speed = expected * 2000e18 / 1e18 / int256(8 hours);
        vm.expectEmit(true, true, true, true, address(pm));
        emit FundingRateUpdated(ETH, expected, 0, mark, 2000e18, T0 + 8 hours, speed);
        pm.updateFundingRate(ETH);
        assertEq(pm.fundingRate(ETH), expected, "stored rate");
        assertEq(pm.fundingPerSecond(ETH), speed, "speed");
        assertEq(pm.cumulativeFundingIndex(ETH), 0, "the index did not jump at the update");
        vm.warp(T0 + 12 hours);
        assertEq(pm.cumulativeFundingIndex(ETH), speed * 4 hours, "moves every second");
    }

    function test_rate_markBelowIndex_shortsPay() public {
        _open(alice, BTC, false, 50_000e18, 10e18);
        vm.warp(T0 + 8 hours);
        _setPrice(btcFeed, 60_000e18);
        pm.updateFundingRate(BTC);
        assertLt(pm.fundingRate(BTC), int256(0), "negative");
        vm.warp(T0 + 9 hours);
        assertLt(pm.cumulativeFundingIndex(BTC), int256(0), "cumulative falls");
    }

    function test_rate_isClamped() public {
        _setPrice(ethFeed, 1500e18); // index 25% below mark
        vm.warp(T0 + 8 hours);
        _setPrice(ethFeed, 1500e18);
        pm.updateFundingRate(ETH);
        assertEq(pm.fundingRate(ETH), int256(0.01e18), "clamped at +max");
        _setPrice(ethFeed, 3000e18);
        vm.warp(T0 + 16 hours);
        _setPrice(ethFeed, 3000e18);
        pm.updateFundingRate(ETH);
        assertEq(pm.fundingRate(ETH), -int256(0.01e18), "clamped at -max");
    }

    function test_indexTwap_fromFeedRounds() public {
        // index 2000 for the first 2h, 2100 for the remaining 6h -> TWAP 2075; nobody pokes anything
        vm.warp(T0 + 2 hours);
        _setPrice(ethFeed, 2100e18);
        vm.warp(T0 + 8 hours);
        (,, uint256 indexTwap) = pm.previewFundingRate(ETH);
        assertEq(indexTwap, 2075e18, "index twap");
    }

    function test_markTwap_weightsTime() public {
        uint256 m0 = pm.markPrice(ETH);
        vm.warp(T0 + 4 hours);
        _open(alice, ETH, true, 50_000e18, 10e18);
        uint256 m1 = pm.markPrice(ETH);
        vm.warp(T0 + 8 hours);
        (, uint256 markTwap,) = pm.previewFundingRate(ETH);
        assertEq(markTwap, (m0 * 4 hours + m1 * 4 hours) / 8 hours, "mark twap");
    }

    function test_fundingSettledOnClose_proportionalToTimeHeld() public {
        (int256 rate,) = _premiumPeriod();
        pm.updateFundingRate(ETH); // from T0 + 8h the index moves at `speed`
        int256 speed = pm.fundingPerSecond(ETH);
        assertGt(rate, int256(0), "longs pay");
        uint256 a = _open(bob, ETH, true, 10_000e18, 5e18);
        uint256 b = _open(carol, ETH, true, 10_000e18, 5e18);
        assertEq(pm.pendingFunding(a), int256(0), "nothing owed at open");
        vm.warp(T0 + 9 hours);
        int256 oneHour = int256(_pos(a).size) * speed * 1 hours / 1e18;
        assertEq(pm.pendingFunding(a), oneHour, "one hour of funding");
        _close(bob, a);
        vm.warp(T0 + 10 hours);
        int256 twoHours = int256(_pos(b).size) * speed * 2 hours / 1e18;
        assertEq(pm.pendingFunding(b), twoHours, "two hours of funding");
        assertApproxEq(twoHours, 2 * int256(_pos(b).size) * speed * 1 hours / 1e18, 2, "twice as long, twice as much");

        (,,, int256 pnl) = pm.quoteClose(b);
        (,, uint256 fee,) = pm.quoteClose(b);
        (, uint256 exitPrice,,) = pm.quoteClose(b);
        IPositionManager.Position memory pb = _pos(b);
        uint256 payout = uint256(int256(pb.collateral) + pnl - twoHours) - fee;
        vm.expectEmit(true, true, true, true, address(pm));
        emit PositionClosed(b, carol, ETH, exitPrice, pnl, twoHours, payout, fee);
        _close(carol, b);
        _assertSolvent();
    }

    /// Attack 3: shorts opened, funding updated and closed in one block receive nothing.
    function test_fundingSnipe_inOneBlock_earnsNothing() public {
        _setPrice(ethFeed, 1900e18); // mark 2000 > index 1900 all period: the next rate is +max
        vm.warp(T0 + 8 hours);
        _setPrice(ethFeed, 1900e18);
        uint256 capitalBefore = vault.freeCollateral(carol);
        uint256 liqBefore = vault.liquidity();
        uint256[] memory ids = new uint256[](4);
        for (uint256 i; i < 4; ++i) {
            ids[i] = _open(carol, ETH, false, 100_000e18, 5e18); // 2M notional in all
        }
        pm.updateFundingRate(ETH);
        assertGt(pm.fundingRate(ETH), int256(0), "shorts would receive");
        for (uint256 i; i < 4; ++i) {
            assertEq(pm.pendingFunding(ids[i]), int256(0), "no time held, no funding");
            _close(carol, ids[i]);
        }
        assertLe(vault.freeCollateral(carol), capitalBefore, "no profit");
        assertGe(vault.liquidity(), liqBefore, "the pool paid nothing");
    }

    /// Payers cannot dodge: closing just before the update pays for the time held.
    function test_fundingDodge_payersPayForTimeHeld() public {
        (, uint256 mark) = _premiumPeriod();
        mark;
        pm.updateFundingRate(ETH);
        uint256 id = _open(bob, ETH, true, 10_000e18, 5e18);
        vm.warp(T0 + 16 hours - 1); // just before the next update
        int256 owed = pm.pendingFunding(id);
        assertEq(owed, int256(_pos(id).size) * pm.fundingPerSecond(ETH) * int256(8 hours - 1) / 1e18, "owed");
        assertGt(owed, int256(0), "a payer");
        vm.recordLogs();
        _close(bob, id);
        assertEq(pm.pendingFunding(id), int256(0), "closed");
    }

    /// Attack 5: an update three days late charges three days at the rate in force.
    function test_lateUpdate_chargesTheTimeThatPassed() public {
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        int256 speed = pm.fundingPerSecond(ETH);
        uint256 id = _open(bob, ETH, true, 10_000e18, 5e18);
        vm.warp(T0 + 8 hours + 3 days);
        _setPrice(ethFeed, 2000e18);
        int256 owed = int256(_pos(id).size) * speed * int256(3 days) / 1e18;
        assertEq(pm.pendingFunding(id), owed, "three days accrued before any update");
        pm.updateFundingRate(ETH);
        assertEq(pm.pendingFunding(id), owed, "the update does not change what was owed");
        assertEq(pm.cumulativeFundingIndex(ETH), speed * int256(3 days), "checkpointed");
    }

    function test_newPositionStartsAtCurrentIndex() public {
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        vm.warp(T0 + 9 hours);
        uint256 id = _open(bob, ETH, true, 250e18, 2e18);
        assertEq(_pos(id).entryFundingIndex, pm.cumulativeFundingIndex(ETH), "entry index");
        assertEq(pm.pendingFunding(id), int256(0), "nothing owed yet");
    }

    function test_previewFundingRate_atUpdateTime() public {
        vm.warp(T0 + 8 hours);
        pm.updateFundingRate(ETH);
        (int256 rate, uint256 mark, uint256 index) = pm.previewFundingRate(ETH);
        assertEq(rate, pm.fundingRate(ETH), "last rate");
        assertEq(mark, pm.markPrice(ETH), "spot mark");
        assertEq(index, pm.indexPrice(ETH), "spot index");
    }

    /// Longs and shorts of the same size held for the same time pay and receive the same amount;
    /// what the pool takes or gives is exactly the difference (here: nothing but rounding).
    function test_balancedBook_paidEqualsReceived() public {
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        uint256 l = _open(bob, ETH, true, 10_000e18, 5e18);
        uint256 s = _open(carol, ETH, false, 10_000e18, 5e18);
        vm.warp(T0 + 11 hours);
        int256 paid = pm.pendingFunding(l) * int256(_pos(s).size) / int256(_pos(l).size);
        int256 received = -pm.pendingFunding(s);
        assertApproxEq(paid, received, 2, "same size, same time: paid == received");
    }

    /// Funding paid is proportional to the time held: two equal positions held t1 and t2 seconds
    /// pay t1 : t2 (to the wei, up to rounding).
    function testFuzz_fundingProportionalToTimeHeld(uint256 t1, uint256 t2, uint256 collateral, bool isLong) public {
        t1 = bound(t1, 1, 30 days);
        t2 = bound(t2, 1, 30 days);
        collateral = bound(collateral, 1_000e18, 50_000e18);
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        int256 speed = pm.fundingPerSecond(ETH);
        uint256 a = _open(bob, ETH, isLong, collateral, 2e18);
        uint256 size = _pos(a).size;
        uint256 start = block.timestamp;
        vm.warp(start + t1);
        int256 f1 = pm.pendingFunding(a);
        vm.warp(start + t2);
        int256 f2 = pm.pendingFunding(a);
        int256 sign = isLong ? int256(1) : -1;
        assertApproxEq(f1, sign * int256(size) * speed * int256(t1) / 1e18, 1, "t1");
        assertApproxEq(f2, sign * int256(size) * speed * int256(t2) / 1e18, 1, "t2");
        // f1 * t2 == f2 * t1 up to one wei of rounding on each
        assertApproxEq(f1 * int256(t2), f2 * int256(t1), t1 + t2, "proportional");
    }

    /// Every wei of funding a position pays goes to the pool and every wei it receives comes from
    /// it: settling everyone moves the pool by exactly the sum; with equal long and short sizes
    /// held for the same time, what longs pay equals what shorts receive up to rounding.
    function testFuzz_fundingPaidEqualsReceived(uint256 n, uint256 seed, uint256 dt) public {
        n = bound(n, 1, 6);
        dt = bound(dt, 1, 10 days);
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        uint256[] memory longs = new uint256[](n);
        uint256[] memory shorts = new uint256[](n);
        for (uint256 i; i < n; ++i) {
            uint256 c = 1_000e18 + uint256(keccak256(abi.encode(seed, i))) % 20_000e18;
            vm.roll(block.number + 1);
            longs[i] = _open(bob, ETH, true, c, 2e18);
            shorts[i] = _open(carol, ETH, false, c, 2e18);
        }
        vm.warp(block.timestamp + dt);
        _setPrice(ethFeed, 2000e18);
        int256 paid;
        int256 received;
        uint256 longSize;
        uint256 shortSize;
        for (uint256 i; i < n; ++i) {
            paid += pm.pendingFunding(longs[i]);
            received -= pm.pendingFunding(shorts[i]);
            longSize += _pos(longs[i]).size;
            shortSize += _pos(shorts[i]).size;
        }
        int256 speed = pm.fundingPerSecond(ETH);
        assertApproxEq(paid, int256(longSize) * speed * int256(dt) / 1e18, n, "longs pay speed x size x time");
        assertApproxEq(received, int256(shortSize) * speed * int256(dt) / 1e18, n, "shorts receive the same way");
        uint256 liq0 = vault.liquidity();
        for (uint256 i; i < n; ++i) {
            vm.prank(bob);
            pm.addMargin(longs[i], 1e18);
            vm.prank(carol);
            pm.addMargin(shorts[i], 1e18);
        }
        assertEq(int256(uint256(vault.liquidity())) - int256(liq0), paid - received, "the pool takes exactly the difference");
        // equal notionals at nearly equal prices: the sides differ only by the vAMM's spread
        uint256 diff = longSize > shortSize ? longSize - shortSize : shortSize - longSize;
        assertApproxEq(paid, received, diff * uint256(speed) * dt / 1e18 + 2 * n, "paid == received + the pool's side");
        _assertSolvent();
    }
}
