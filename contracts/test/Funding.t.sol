// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {IPositionManager} from "../src/interfaces/IPerpEx.sol";
import {PositionManager} from "../src/core/PositionManager.sol";

contract FundingTest is Fixture {
    function setUp() public override {
        super.setUp();
        _fund(alice, 500_000e18);
        _fund(bob, 500_000e18);
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

    function test_updateFundingRate_onceePerInterval() public {
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

    function test_rate_markAboveIndex_longsPay() public {
        _open(alice, ETH, true, 50_000e18, 10e18); // 500k notional: mark ~ +0.5%
        uint256 mark = pm.markPrice(ETH);
        vm.warp(T0 + 8 hours);
        (int256 preview, uint256 pMark, uint256 pIndex) = pm.previewFundingRate(ETH);
        // TWAPs over [T0, T0 + 8h]: the mark was `mark` for the whole window (the trade happened at T0)
        assertEq(pMark, mark, "mark twap");
        assertEq(pIndex, 2000e18, "index twap");
        int256 expected = (int256(mark) - int256(2000e18)) * 1e18 * int256(8 hours) / (int256(2000e18) * 1 days);
        assertEq(preview, expected, "rate formula");
        assertGt(expected, int256(0), "positive");

        vm.expectEmit(true, true, true, true, address(pm));
        emit FundingRateUpdated(ETH, expected, expected * 2000e18 / 1e18, mark, 2000e18, T0 + 8 hours);
        pm.updateFundingRate(ETH);
        assertEq(pm.fundingRate(ETH), expected, "stored rate");
        assertEq(pm.cumulativeFundingIndex(ETH), expected * 2000e18 / 1e18, "cumulative");
    }

    function test_rate_markBelowIndex_shortsPay() public {
        _open(alice, BTC, false, 50_000e18, 10e18);
        vm.warp(T0 + 8 hours);
        pm.updateFundingRate(BTC);
        assertLt(pm.fundingRate(BTC), int256(0), "negative");
        assertLt(pm.cumulativeFundingIndex(BTC), int256(0), "cumulative negative");
    }

    function test_rate_isClamped() public {
        _setPrice(ethFeed, 1500e18); // index 25% below mark
        oracle.update(ETH);
        vm.warp(T0 + 8 hours);
        pm.updateFundingRate(ETH);
        assertEq(pm.fundingRate(ETH), int256(0.01e18), "clamped at +max");
        _setPrice(ethFeed, 3000e18);
        oracle.update(ETH);
        vm.warp(T0 + 16 hours);
        pm.updateFundingRate(ETH);
        assertEq(pm.fundingRate(ETH), -int256(0.01e18), "clamped at -max");
    }

    function test_indexTwap_weightsTime() public {
        // index 2000 for the first 2h, 2100 for the remaining 6h -> TWAP 2075
        vm.warp(T0 + 2 hours);
        _setPrice(ethFeed, 2100e18);
        oracle.update(ETH);
        vm.warp(T0 + 8 hours);
        (, , uint256 indexTwap) = pm.previewFundingRate(ETH);
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

    function test_fundingSettledOnClose() public {
        uint256 longId = _open(alice, ETH, true, 50_000e18, 10e18);
        uint256 shortId = _open(bob, ETH, false, 10_000e18, 10e18);
        vm.warp(T0 + 8 hours);
        pm.updateFundingRate(ETH);
        int256 cum = pm.cumulativeFundingIndex(ETH);
        assertGt(cum, int256(0), "longs pay");
        IPositionManager.Position memory pl = _pos(longId);
        IPositionManager.Position memory ps = _pos(shortId);
        int256 longPays = int256(pl.size) * cum / 1e18;
        int256 shortGets = -(int256(ps.size) * cum / 1e18);
        assertEq(pm.pendingFunding(longId), longPays, "long pending");
        assertEq(pm.pendingFunding(shortId), shortGets, "short pending (negative: receives)");

        (uint256 exitPrice,,,) = _exitInfo(longId);
        (,,, int256 pnl) = pm.quoteClose(longId);
        (,, uint256 fee,) = pm.quoteClose(longId);
        uint256 payout = uint256(int256(pl.collateral) + pnl - longPays) - fee;
        vm.expectEmit(true, true, true, true, address(pm));
        emit PositionClosed(longId, alice, ETH, exitPrice, pnl, longPays, payout);
        _close(alice, longId);
        _close(bob, shortId);
        _assertSolvent();
    }

    function test_newPositionStartsAtCurrentIndex() public {
        _open(alice, ETH, true, 50_000e18, 10e18);
        vm.warp(T0 + 8 hours);
        pm.updateFundingRate(ETH);
        uint256 id = _open(bob, ETH, true, 100e18, 2e18);
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

    function _exitInfo(uint256 tokenId) internal view returns (uint256 exitPrice, uint256, uint256, int256) {
        (, exitPrice,,) = pm.quoteClose(tokenId);
        return (exitPrice, 0, 0, 0);
    }
}
