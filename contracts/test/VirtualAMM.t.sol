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
        amm.swap(true, true, 1e18, true);
    }

    function test_swap_zeroAmount() public {
        vm.prank(pmAddr);
        vm.expectRevert(VirtualAMM.ZeroAmount.selector);
        amm.swap(true, true, 0, true);
    }

    function test_openLong_matchesQuoteAndConstantProduct() public {
        (uint256 qSize, uint256 avg, uint256 qFee, uint256 impact) = amm.quoteOpen(true, 20_000e18);
        vm.prank(pmAddr);
        (uint256 size, uint256 fee) = amm.swap(true, true, 20_000e18, true);
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
        (uint256 size,) = amm.swap(false, true, 10_000e18, true);
        assertLt(amm.markPrice(), 2000e18, "mark down");
        (uint256 quoteIn,) = amm.swap(false, false, size, true);
        vm.stopPrank();
        assertGe(quoteIn, 10_000e18, "buying back costs at least what the sale gave");
    }

    function test_openLong_closeLong_roundTrip() public {
        vm.startPrank(pmAddr);
        (uint256 size,) = amm.swap(true, true, 10_000e18, true);
        (uint256 quoteOut,) = amm.swap(true, false, size, true);
        vm.stopPrank();
        assertLe(quoteOut, 10_000e18, "selling back returns at most the quote paid");
        assertApproxEq(amm.markPrice(), 2000e18, 1e9, "back to the start");
    }

    function test_priceImpactLimit() public {
        vm.prank(pmAddr);
        vm.expectPartialRevert(VirtualAMM.PriceImpactTooHigh.selector);
        amm.swap(true, true, 60_000e18, true); // ~6% mark move
        vm.prank(pmAddr);
        amm.swap(true, true, 60_000e18, false); // liquidations skip the limit
    }

    function test_insufficientReserve() public {
        vm.startPrank(pmAddr);
        vm.expectRevert(VirtualAMM.InsufficientReserve.selector);
        amm.swap(false, true, 2_000_000e18, false); // short for the whole quote reserve
        vm.expectRevert(VirtualAMM.InsufficientReserve.selector);
        amm.swap(false, false, 1_000e18, false); // buy back the whole base reserve
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
        amm.swap(true, true, 20_000e18, true);
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
            (uint256 size,) = amm.swap(true, true, notional, false);
            (uint256 back,) = amm.swap(true, false, size, false);
            assertLe(back, notional, "long round trip");
        } else {
            (uint256 size,) = amm.swap(false, true, notional, false);
            (uint256 cost,) = amm.swap(false, false, size, false);
            assertGe(cost, notional, "short round trip");
        }
        vm.stopPrank();
    }
}
