// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {PositionManagerBase} from "../src/core/PositionManagerBase.sol";
import {IPositionManager} from "../src/interfaces/IPerpEx.sol";

/// Funding is zero-sum between longs and shorts, accrues every second at the rate the last
/// update set, and an update only sets the next rate.
contract FundingTest is Fixture {
    address internal dave = address(0xDA7E);
    uint256 internal _posSizeAtOpen;

    function setUp() public override {
        super.setUp();
        for (uint256 i; i < 2; ++i) {
            _fund(alice, 1_000_000e18);
            _fund(bob, 1_000_000e18);
            _fund(carol, 1_000_000e18);
            _fund(dave, 1_000_000e18);
        }
    }

    function _next() internal {
        vm.roll(block.number + 1);
    }

    function _cum(bool isLong) internal view returns (int256) {
        (int256 l, int256 s) = pm.cumulativeFunding(ETH);
        return isLong ? l : s;
    }

    function test_updateFundingRate_revertsBeforeInterval() public {
        uint256 next = pm.nextFundingTime(ETH);
        assertEq(next, T0 + 8 hours, "next");
        vm.warp(next - 1);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.FundingTooEarly.selector, ETH, next));
        pm.updateFundingRate(ETH);
    }

    function test_updateFundingRate_revertsUnknownMarket() public {
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.UnknownMarket.selector, bytes32(uint256(1))));
        pm.updateFundingRate(bytes32(uint256(1)));
    }

    function test_updateFundingRate_oncePerInterval() public {
        vm.warp(T0 + 8 hours);
        vm.prank(carol); // anyone
        pm.updateFundingRate(ETH);
        assertEq(pm.lastFundingTime(ETH), T0 + 8 hours, "last");
        assertEq(pm.nextFundingTime(ETH), T0 + 16 hours, "next");
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.FundingTooEarly.selector, ETH, T0 + 16 hours));
        pm.updateFundingRate(ETH);
        vm.warp(T0 + 16 hours - 1);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.FundingTooEarly.selector, ETH, T0 + 16 hours));
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
        _next();
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
        emit FundingRateUpdated(ETH, expected, 0, 0, mark, 2000e18, T0 + 8 hours, speed);
        pm.updateFundingRate(ETH);
        assertEq(pm.fundingRate(ETH), expected, "stored rate");
        assertEq(pm.fundingPerSecond(ETH), speed, "speed");
        // only longs are open: nobody receives, so nobody pays
        vm.warp(T0 + 12 hours);
        assertEq(_cum(true), 0, "one side empty: no funding");
        assertEq(_cum(false), 0, "one side empty: no funding");
    }

    function test_rate_markBelowIndex_shortsPay() public {
        _open(alice, BTC, false, 50_000e18, 10e18);
        vm.warp(T0 + 8 hours);
        _setPrice(btcFeed, 60_000e18);
        pm.updateFundingRate(BTC);
        assertLt(pm.fundingRate(BTC), int256(0), "negative");
        _open(bob, BTC, true, 10_000e18, 2e18);
        vm.warp(T0 + 9 hours);
        (int256 l, int256 s) = pm.cumulativeFunding(BTC);
        assertGt(s, int256(0), "shorts pay");
        assertLt(l, int256(0), "longs receive");
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

    /// Longs pay the full speed on the matched size; with more longs than shorts, each long pays
    /// pro rata and each short receives the full speed: paid == received.
    function test_zeroSum_imbalancedBook() public {
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        int256 speed = pm.fundingPerSecond(ETH);
        uint256 s = _open(bob, ETH, false, 100_000e18, 2e18); // short ~100 ETH vs ~250 ETH long
        uint256 startL = _pos(1).size;
        uint256 startS = _pos(s).size;
        uint256 t0 = block.timestamp;
        vm.warp(t0 + 1 hours);
        int256 paid = pm.pendingFunding(1);
        int256 received = -pm.pendingFunding(s);
        assertApproxEq(received, int256(startS) * speed * 1 hours / 1e18, 1, "shorts (the smaller side) get it all");
        assertApproxEq(paid, received, startL / 1e18 + startS / 1e18 + 2, "paid == received");
        assertGe(paid, received, "payers cover the receivers");
        assertLt(uint256(paid) * 1e18 / startL, uint256(speed) * 1 hours, "each long pays less than the full rate");
    }

    function test_fundingSettledOnClose_proportionalToTimeHeld() public {
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        // a balanced book on top of alice's long: shorts matching it
        uint256 hedge = _open(dave, ETH, false, 100_000e18, 5e18);
        _next();
        uint256 a = _open(bob, ETH, true, 10_000e18, 5e18);
        _posSizeAtOpen = _pos(a).size;
        uint256 b = _open(carol, ETH, true, 10_000e18, 5e18);
        uint256 sb = _open(dave, ETH, false, 20_000e18, 5e18);
        hedge;
        sb;
        assertEq(pm.pendingFunding(a), int256(0), "nothing owed at open");
        uint256 t0 = block.timestamp;
        vm.warp(t0 + 1 hours);
        int256 oneHour = pm.pendingFunding(a);
        assertGt(oneHour, int256(0), "longs pay");
        _next();
        _close(bob, a);
        vm.warp(t0 + 2 hours);
        int256 twoHoursB = pm.pendingFunding(b);
        // b, of a's size, held twice as long: it paid more (the long side shrank when a left, so
        // its second hour cost at least as much per unit as the first)
        assertGt(twoHoursB, oneHour, "longer held, more paid");
        assertGe(
            twoHoursB * 1e18 / int256(_pos(b).size), 2 * (oneHour * 1e18 / int256(_posSizeAtOpen)) - 2, "at least twice"
        );

        (,,, int256 pnl) = pm.quoteClose(b);
        (,, uint256 fee,) = pm.quoteClose(b);
        (, uint256 exitPrice,,) = pm.quoteClose(b);
        IPositionManager.Position memory pb = _pos(b);
        uint256 payout = uint256(int256(pb.collateral) + pnl - twoHoursB) - fee;
        _next();
        vm.expectEmit(true, true, true, true, address(pm));
        emit PositionClosed(b, carol, ETH, exitPrice, pnl, twoHoursB, payout, fee);
        _close(carol, b);
        _assertSolvent();
    }

    /// Attack 3: shorts opened, funding updated and closed in one block receive nothing.
    function test_fundingSnipe_inOneBlock_earnsNothing() public {
        _open(alice, ETH, true, 100_000e18, 5e18); // payers exist
        _setPrice(ethFeed, 1900e18); // mark 2000 > index 1900 all period: the next rate is +max
        vm.warp(T0 + 8 hours);
        _setPrice(ethFeed, 1900e18);
        _next();
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

    /// The review's funding flip: alone in the market, close and reopen on the other side at each
    /// update, so the rate the previous side set always pays the attacker. Funding is zero-sum:
    /// with nobody on the other side, nothing is paid, by the pool or anyone.
    function test_fundingFlip_aloneEarnsNothing() public {
        uint256 capital = vault.freeCollateral(dave);
        uint256 liq0 = vault.liquidity();
        uint256 id = _open(dave, ETH, true, 400_000e18, 3e18);
        for (uint256 k = 1; k <= 4; ++k) {
            vm.warp(T0 + k * 8 hours);
            _setPrice(ethFeed, 2000e18);
            _next();
            pm.updateFundingRate(ETH);
            assertEq(pm.pendingFunding(id), int256(0), "no counterparty: no funding");
            _close(dave, id);
            _next();
            id = _open(dave, ETH, k % 2 == 1 ? false : true, 400_000e18, 3e18);
        }
        _next();
        _close(dave, id);
        assertLt(vault.freeCollateral(dave), capital, "fees only");
        assertGe(vault.liquidity(), liq0, "the pool paid nothing");
        _assertSolvent();
    }

    /// Payers cannot dodge: closing just before the update pays for the time held.
    function test_fundingDodge_payersPayForTimeHeld() public {
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        _open(dave, ETH, false, 200_000e18, 5e18); // receivers
        uint256 id = _open(bob, ETH, true, 10_000e18, 5e18);
        vm.warp(T0 + 16 hours - 1); // just before the next update
        int256 owed = pm.pendingFunding(id);
        assertGt(owed, int256(0), "a payer");
        _next();
        _close(bob, id);
        assertEq(pm.pendingFunding(id), int256(0), "closed");
    }

    /// Attack 5: an update three days late charges three days at the rate in force.
    function test_lateUpdate_chargesTheTimeThatPassed() public {
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        int256 speed = pm.fundingPerSecond(ETH);
        _open(dave, ETH, false, 1_000_000e18, 1e18); // shorts outnumber longs: longs pay full rate
        uint256 id = _open(bob, ETH, true, 10_000e18, 5e18);
        uint256 t0 = block.timestamp;
        vm.warp(t0 + 3 days);
        _setPrice(ethFeed, 2000e18);
        int256 owed = int256(_pos(id).size) * speed * int256(3 days) / 1e18;
        assertApproxEq(pm.pendingFunding(id), owed, 1, "three days accrued before any update");
        pm.updateFundingRate(ETH);
        assertApproxEq(pm.pendingFunding(id), owed, 1, "the update does not change what was owed");
    }

    function test_newPositionStartsAtCurrentIndex() public {
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        _open(dave, ETH, false, 100_000e18, 2e18);
        vm.warp(T0 + 9 hours);
        uint256 id = _open(bob, ETH, true, 500e18, 2e18);
        assertEq(_pos(id).entryFundingIndex, _cum(true), "entry index");
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

    /// Funding paid is proportional to the time held: with the book unchanged, a position pays
    /// t1 : t2 for t1 and t2 seconds (up to rounding).
    function testFuzz_fundingProportionalToTimeHeld(uint256 t1, uint256 t2, uint256 collateral, bool isLong)
        public
    {
        t1 = bound(t1, 1, 30 days);
        t2 = bound(t2, 1, 30 days);
        collateral = bound(collateral, 1_000e18, 50_000e18);
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        _open(dave, ETH, false, 100_000e18, 5e18); // the other side
        uint256 a = _open(bob, ETH, isLong, collateral, 2e18);
        uint256 start = block.timestamp;
        vm.warp(start + t1);
        int256 f1 = pm.pendingFunding(a);
        vm.warp(start + t2);
        int256 f2 = pm.pendingFunding(a);
        assertTrue(f1 != 0 && f2 != 0, "funding moves");
        // f1 * t2 == f2 * t1 up to one unit of rounding of the index (size / 1e18) each
        uint256 tol = (_pos(a).size / 1e18 + 2) * (t1 + t2);
        assertApproxEq(f1 * int256(t2), f2 * int256(t1), tol, "proportional");
    }

    /// Every position's funding is settled through the funding buffer, never the pool, and what
    /// the paying side pays equals what the receiving side receives, up to rounding (payers
    /// rounded up, receivers down: the buffer never owes more than it got).
    function testFuzz_fundingPaidEqualsReceived(uint256 n, uint256 seed, uint256 dt) public {
        n = bound(n, 1, 6);
        dt = bound(dt, 1, 10 days);
        _premiumPeriod();
        pm.updateFundingRate(ETH);
        uint256[] memory ids = new uint256[](2 * n);
        for (uint256 i; i < 2 * n; ++i) {
            uint256 c = 1_000e18 + uint256(keccak256(abi.encode(seed, i))) % 20_000e18;
            _next();
            ids[i] = _open(i % 2 == 0 ? bob : carol, ETH, i % 2 == 0, c, 2e18);
        }
        vm.warp(block.timestamp + dt);
        _setPrice(ethFeed, 2000e18);
        int256 paid = pm.pendingFunding(1); // alice's long
        int256 received;
        for (uint256 i; i < 2 * n; ++i) {
            int256 f = pm.pendingFunding(ids[i]);
            if (f > 0) paid += f;
            else received -= f;
        }
        assertGe(paid, received, "payers cover the receivers");
        assertApproxEq(paid, received, 4 * n + 8 + 2 * uint256(_pos(1).size) / 1e18, "paid == received");
        uint256 liq0 = vault.liquidity();
        int256 buffer0 = vault.fundingBuffer();
        vm.prank(alice);
        pm.addMargin(1, 1e18);
        for (uint256 i; i < 2 * n; ++i) {
            vm.prank(i % 2 == 0 ? bob : carol);
            pm.addMargin(ids[i], 1e18);
        }
        assertEq(vault.liquidity(), liq0, "the pool is no funding counterparty");
        assertEq(vault.fundingBuffer() - buffer0, paid - received, "the buffer holds the rounding");
        assertGe(vault.fundingBuffer(), int256(0), "never owes");
        _assertSolvent();
    }
}
