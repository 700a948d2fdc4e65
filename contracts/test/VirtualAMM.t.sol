// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestBase} from "./base/TestBase.sol";
import {VirtualAMM} from "../src/core/VirtualAMM.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract VirtualAMMTest is TestBase {
    VirtualAMM internal amm;
    address internal pmAddr = address(0x9A);

    function setUp() public {
        vm.warp(1_000_000);
        amm = new VirtualAMM("ETH/USDT", pmAddr, 1_000e18, 2_000_000e18, 0.001e18, 0.05e18);
    }

    function test_constructor() public view {
        assertEq(amm.marketId(), keccak256("ETH/USDT"), "market id");
        assertEq(amm.pair(), "ETH/USDT", "pair");
        assertEq(amm.positionManager(), pmAddr, "pm");
        assertEq(amm.markPrice(), 2000e18, "mark");
        (uint256 b, uint256 q) = amm.getReserves();
        assertEq(b, 1_000e18, "base");
        assertEq(q, 2_000_000e18, "quote");
        assertEq(amm.feeRatio(), 0.001e18, "fee");
        assertEq(amm.maxPriceImpact(), 0.05e18, "impact");
        assertEq(amm.owner(), address(this), "owner");
    }

    function test_constructor_reverts() public {
        vm.expectRevert(VirtualAMM.InvalidParams.selector);
        new VirtualAMM("X", address(0), 1e18, 1e18, 0, 0.05e18);
        vm.expectRevert(VirtualAMM.InvalidReserves.selector);
        new VirtualAMM("X", pmAddr, 0, 1e18, 0, 0.05e18);
        vm.expectRevert(VirtualAMM.InvalidReserves.selector);
        new VirtualAMM("X", pmAddr, 1e18, type(uint128).max, 0, 0.05e18);
        vm.expectRevert(VirtualAMM.InvalidParams.selector);
        new VirtualAMM("X", pmAddr, 1e18, 1e18, 0.2e18, 0.05e18);
        vm.expectRevert(VirtualAMM.InvalidParams.selector);
        new VirtualAMM("X", pmAddr, 1e18, 1e18, 0, 0);
    }

    function test_swap_onlyPositionManager() public {
        vm.expectRevert(VirtualAMM.OnlyPositionManager.selector);
        amm.swap(true, true, 1e18);
    }

    function test_swap_zeroAmount() public {
        vm.prank(pmAddr);
        vm.expectRevert(VirtualAMM.ZeroAmount.selector);
        amm.swap(true, true, 0);
    }

    function test_openLong_matchesQuoteAndConstantProduct() public {
        (uint256 qSize, uint256 avg, uint256 qFee, uint256 impact) = amm.quoteOpen(true, 20_000e18);
        vm.prank(pmAddr);
        (uint256 size, uint256 fee) = amm.swap(true, true, 20_000e18);
        assertEq(size, qSize, "size");
        assertEq(fee, qFee, "fee");
        assertEq(fee, 20e18, "0.1%");
        assertEq(avg, 20_000e18 * 1e18 / size, "avg");
        (uint256 b, uint256 q) = amm.getReserves();
        assertEq(q, 2_020_000e18, "quote in");
        assertEq(b, 1_000e18 - size, "base out");
        assertGe(b * q, 1_000e18 * 2_000_000e18, "k never decreases");
        assertApproxEq(impact, 0.0201e18, 1e12, "impact ~2.01%");
    }

    function test_openShort_closeShort_roundTrip() public {
        vm.startPrank(pmAddr);
        (uint256 size,) = amm.swap(false, true, 10_000e18);
        assertLt(amm.markPrice(), 2000e18, "mark down");
        (uint256 quoteIn,) = amm.swap(false, false, size);
        vm.stopPrank();
        assertGe(quoteIn, 10_000e18, "buying back costs at least what the sale gave");
    }

    function test_openLong_closeLong_roundTrip() public {
        vm.startPrank(pmAddr);
        (uint256 size,) = amm.swap(true, true, 10_000e18);
        (uint256 quoteOut,) = amm.swap(true, false, size);
        vm.stopPrank();
        assertLe(quoteOut, 10_000e18, "selling back returns at most the quote paid");
        assertApproxEq(amm.markPrice(), 2000e18, 1e9, "back to the start");
    }

    function test_priceImpactLimit() public {
        vm.prank(pmAddr);
        vm.expectPartialRevert(VirtualAMM.PriceImpactTooHigh.selector);
        amm.swap(true, true, 60_000e18); // ~6% mark move
    }

    /// The per-block limit holds across every trade of a block, measured from the mark the block
    /// started with; the next block starts afresh.
    function test_blockPriceMoveLimit_acrossTrades() public {
        amm.setBlockPriceMoveLimit(0.05e18);
        vm.startPrank(pmAddr);
        amm.swap(true, true, 30_000e18); // ~3%
        vm.expectPartialRevert(VirtualAMM.BlockPriceMoveTooHigh.selector);
        amm.swap(true, true, 30_000e18); // another 3% in the same block: 6% from its start
        amm.swap(false, true, 20_000e18); // moving back is fine
        vm.stopPrank();
        assertEq(amm.blockReferenceMark(), 2000e18, "measured from the block's first mark");
        vm.roll(block.number + 1);
        uint256 m = amm.markPrice();
        assertEq(amm.blockReferenceMark(), m, "a new block starts from the current mark");
        vm.prank(pmAddr);
        amm.swap(true, true, 30_000e18);
    }

    function test_setBlockPriceMoveLimit() public {
        amm.setBlockPriceMoveLimit(0.02e18);
        assertEq(amm.maxPriceMovePerBlock(), 0.02e18, "set");
        vm.expectRevert(VirtualAMM.InvalidParams.selector);
        amm.setBlockPriceMoveLimit(0);
        vm.expectRevert(VirtualAMM.InvalidParams.selector);
        amm.setBlockPriceMoveLimit(0.6e18);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(0xBAD)));
        vm.prank(address(0xBAD));
        amm.setBlockPriceMoveLimit(0.01e18);
    }

    /// A liquidation unwinds what fits inside the limits and the caller's bound, never more, and
    /// restricts open/close trades for the rest of the block.
    function test_liquidate_fitsInsideTheLimitsAndRestricts() public {
        vm.prank(pmAddr);
        (uint256 size,) = amm.swap(true, true, 45_000e18); // a long of ~4.5% of the pool
        vm.roll(block.number + 1);
        amm.setParams(0.001e18, 0.01e18); // per trade 1%
        uint256 mark = amm.markPrice();
        vm.prank(pmAddr);
        (uint256 closed, uint256 quote) = amm.liquidate(true, size, 0, 0);
        assertLt(closed, size, "partial");
        assertGt(closed, 0, "something");
        assertGe(amm.markPrice(), mark * 0.99e18 / 1e18, "never past the 1% limit");
        assertApproxEq(amm.markPrice(), mark * 0.99e18 / 1e18, mark / 1e12, "uses what fits");
        assertGt(quote, 0, "quote");
        assertTrue(amm.isRestricted(), "restricted");
        vm.prank(pmAddr);
        vm.expectRevert(abi.encodeWithSelector(VirtualAMM.MarketRestricted.selector, block.number));
        amm.swap(true, true, 1e18);
        // no room left in this block for another 1% (per trade is fine, per block is 5%)
        vm.prank(pmAddr);
        (uint256 again,) = amm.liquidate(true, size - closed, 0, 0);
        assertGt(again, 0, "a second liquidation may use the block's remaining room");
        vm.roll(block.number + 1);
        vm.prank(pmAddr);
        amm.swap(true, true, 1e18);
    }

    function test_liquidate_respectsTheCallersBound() public {
        vm.prank(pmAddr);
        (uint256 size,) = amm.swap(true, true, 20_000e18);
        vm.roll(block.number + 1);
        uint256 floor = amm.markPrice() * 0.995e18 / 1e18;
        vm.prank(pmAddr);
        (uint256 closed,) = amm.liquidate(true, size, floor, 0);
        assertLt(closed, size, "partial");
        assertGe(amm.markPrice(), floor, "above the floor");
        // already at the floor: nothing fits
        vm.prank(pmAddr);
        (uint256 none, uint256 q) = amm.liquidate(true, size - closed, floor, 0);
        assertEq(none, 0, "nothing");
        assertEq(q, 0, "no quote");
    }

    function test_liquidate_shortBoundIsACeiling() public {
        vm.prank(pmAddr);
        (uint256 size,) = amm.swap(false, true, 20_000e18);
        vm.roll(block.number + 1);
        uint256 ceiling = amm.markPrice() * 1.005e18 / 1e18;
        vm.prank(pmAddr);
        (uint256 closed,) = amm.liquidate(false, size, ceiling, 0);
        assertLt(closed, size, "partial");
        assertLe(amm.markPrice(), ceiling, "below the ceiling");
    }

    function test_liquidate_leavesNoDust() public {
        vm.prank(pmAddr);
        (uint256 size,) = amm.swap(true, true, 20_000e18);
        vm.roll(block.number + 1);
        uint256 floor = amm.markPrice() * 0.995e18 / 1e18;
        uint256 fits = amm.liquidatableSize(true, size, floor);
        uint256 minRemaining = size - fits + 1; // the rest would be just below the minimum
        vm.prank(pmAddr);
        (uint256 closed,) = amm.liquidate(true, size, floor, minRemaining);
        assertEq(size - closed, minRemaining, "leaves the minimum, not dust");
    }

    function test_unwindValue_matchesClosingEverything() public {
        vm.startPrank(pmAddr);
        (uint256 l1,) = amm.swap(true, true, 30_000e18);
        (uint256 s1,) = amm.swap(false, true, 12_000e18);
        vm.stopPrank();
        int256 value = amm.unwindValue(int256(l1) - int256(s1));
        vm.roll(block.number + 1);
        vm.startPrank(pmAddr);
        (uint256 outL,) = amm.swap(true, false, l1);
        (uint256 inS,) = amm.swap(false, false, s1);
        vm.stopPrank();
        assertApproxEq(value, int256(outL) - int256(inS), 1e6, "path independent");
        assertEq(amm.unwindValue(0), int256(0), "nothing open");
    }

    function testFuzz_liquidateNeverPassesItsBounds(bool isLong, uint256 notional, uint256 boundBps) public {
        notional = bound(notional, 1_000e18, 45_000e18);
        boundBps = bound(boundBps, 1, 600);
        vm.prank(pmAddr);
        (uint256 size,) = amm.swap(isLong, true, notional);
        vm.roll(block.number + 1);
        uint256 mark = amm.markPrice();
        uint256 b = isLong ? mark * (10_000 - boundBps) / 10_000 : mark * (10_000 + boundBps) / 10_000;
        vm.prank(pmAddr);
        (uint256 closed,) = amm.liquidate(isLong, size, b, 0);
        uint256 after_ = amm.markPrice();
        if (isLong) {
            assertGe(after_, b, "floor");
            assertGe(after_, mark * 0.95e18 / 1e18, "per-trade limit");
        } else {
            assertLe(after_, b + 1, "ceiling");
            assertLe(after_, mark * 1.05e18 / 1e18 + 1, "per-trade limit");
        }
        assertLe(closed, size, "never more than asked");
    }

    function test_insufficientReserve() public {
        vm.startPrank(pmAddr);
        vm.expectRevert(VirtualAMM.InsufficientReserve.selector);
        amm.swap(false, true, 2_000_000e18); // short for the whole quote reserve
        vm.expectRevert(VirtualAMM.InsufficientReserve.selector);
        amm.swap(false, false, 1_000e18); // buy back the whole base reserve
        vm.stopPrank();
    }

    function test_cumulativePrice() public {
        (uint256 c0,) = amm.currentPriceCumulative();
        assertEq(c0, 0, "starts at zero");
        vm.warp(block.timestamp + 100);
        (uint256 c1, uint256 t1) = amm.currentPriceCumulative();
        assertEq(c1, 2000e18 * 100, "extrapolated");
        assertEq(t1, block.timestamp, "now");
        vm.prank(pmAddr);
        amm.swap(true, true, 20_000e18);
        assertEq(amm.priceCumulativeLast(), 2000e18 * 100, "recorded the old mark");
        assertEq(amm.lastTimestamp(), block.timestamp, "timestamp");
        uint256 m = amm.markPrice();
        vm.warp(block.timestamp + 50);
        (uint256 c2,) = amm.currentPriceCumulative();
        assertEq(c2, 2000e18 * 100 + m * 50, "new mark from the trade on");
    }

    function test_quotesOfZero() public view {
        (uint256 s,,,) = amm.quoteOpen(true, 0);
        assertEq(s, 0, "zero");
        (uint256 q,,,) = amm.quoteClose(false, 0);
        assertEq(q, 0, "zero");
    }

    function test_setParams() public {
        amm.setParams(0.002e18, 0.1e18);
        assertEq(amm.feeRatio(), 0.002e18, "fee");
        assertEq(amm.maxPriceImpact(), 0.1e18, "impact");
        vm.expectRevert(VirtualAMM.InvalidParams.selector);
        amm.setParams(0.2e18, 0.1e18);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(0xBAD)));
        vm.prank(address(0xBAD));
        amm.setParams(0, 0.1e18);
    }

    function testFuzz_roundTripNeverGains(bool isLong, uint256 notional) public {
        notional = bound(notional, 1e12, 40_000e18);
        vm.startPrank(pmAddr);
        if (isLong) {
            (uint256 size,) = amm.swap(true, true, notional);
            (uint256 back,) = amm.swap(true, false, size);
            assertLe(back, notional, "long round trip");
        } else {
            (uint256 size,) = amm.swap(false, true, notional);
            (uint256 cost,) = amm.swap(false, false, size);
            assertGe(cost, notional, "short round trip");
        }
        vm.stopPrank();
    }
}
