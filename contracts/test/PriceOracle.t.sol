// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestBase} from "./base/TestBase.sol";
import {PriceOracle} from "../src/oracle/PriceOracle.sol";
import {SettableFeed} from "../src/oracle/SettableFeed.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract PriceOracleTest is TestBase {
    PriceOracle internal oracle;
    SettableFeed internal feed8;
    bytes32 internal constant M = keccak256("ETH/USDT");

    function setUp() public {
        vm.warp(1_000_000);
        oracle = new PriceOracle();
        feed8 = new SettableFeed(8, "ETH / USD", 2000e8);
        oracle.setFeed(M, address(feed8), 1 hours);
    }

    function test_setFeed_andScale8Decimals() public view {
        assertEq(oracle.getIndexPrice(M), 2000e18, "scaled");
        assertEq(oracle.feedOf(M), address(feed8), "feed");
        PriceOracle.Feed memory f = oracle.feedConfig(M);
        assertEq(f.decimals, 8, "decimals");
        assertEq(f.maxStaleness, 1 hours, "staleness");
    }

    function test_scale18And20Decimals() public {
        SettableFeed f18 = new SettableFeed(18, "x", 3e18);
        SettableFeed f20 = new SettableFeed(20, "y", 5e20);
        oracle.setFeed(keccak256("A"), address(f18), 1 hours);
        oracle.setFeed(keccak256("B"), address(f20), 1 hours);
        assertEq(oracle.getIndexPrice(keccak256("A")), 3e18, "18");
        assertEq(oracle.getIndexPrice(keccak256("B")), 5e18, "20");
    }

    function test_rejectsStale() public {
        vm.warp(block.timestamp + 1 hours);
        oracle.getIndexPrice(M); // exactly at the limit is fine
        vm.warp(block.timestamp + 1);
        vm.expectRevert(abi.encodeWithSelector(PriceOracle.StalePrice.selector, M, 1_000_000, 1 hours));
        oracle.getIndexPrice(M);
        vm.expectRevert(abi.encodeWithSelector(PriceOracle.StalePrice.selector, M, 1_000_000, 1 hours));
        oracle.update(M);
    }

    function test_rejectsNonPositive() public {
        feed8.setPrice(0);
        vm.expectRevert(abi.encodeWithSelector(PriceOracle.InvalidPrice.selector, M, int256(0)));
        oracle.getIndexPrice(M);
        feed8.setPrice(-5);
        vm.expectRevert(abi.encodeWithSelector(PriceOracle.InvalidPrice.selector, M, int256(-5)));
        oracle.getIndexPrice(M);
    }

    function test_rejectsZeroUpdatedAt() public {
        feed8.setPriceWithTimestamp(2000e8, 0);
        vm.expectPartialRevert(PriceOracle.StalePrice.selector);
        oracle.getIndexPrice(M);
    }

    function test_feedNotSet() public {
        vm.expectRevert(abi.encodeWithSelector(PriceOracle.FeedNotSet.selector, bytes32(0)));
        oracle.getIndexPrice(bytes32(0));
        vm.expectRevert(abi.encodeWithSelector(PriceOracle.FeedNotSet.selector, bytes32(0)));
        oracle.indexCumulative(bytes32(0));
    }

    function test_setFeed_reverts() public {
        vm.expectRevert(abi.encodeWithSelector(PriceOracle.InvalidFeed.selector, address(0)));
        oracle.setFeed(M, address(0), 1 hours);
        vm.expectRevert(abi.encodeWithSelector(PriceOracle.InvalidFeed.selector, address(0x1234)));
        oracle.setFeed(M, address(0x1234), 1 hours);
        vm.expectRevert(PriceOracle.InvalidStaleness.selector);
        oracle.setFeed(M, address(feed8), 0);
        SettableFeed bad = new SettableFeed(8, "bad", -1);
        vm.expectPartialRevert(PriceOracle.InvalidPrice.selector);
        oracle.setFeed(M, address(bad), 1 hours);
        SettableFeed huge = new SettableFeed(40, "huge", 1);
        vm.expectRevert(abi.encodeWithSelector(PriceOracle.InvalidFeed.selector, address(huge)));
        oracle.setFeed(M, address(huge), 1 hours);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(0xBAD)));
        vm.prank(address(0xBAD));
        oracle.setFeed(M, address(feed8), 1 hours);
    }

    function test_accumulatorAndTwap() public {
        (uint256 c0, uint256 t0) = oracle.indexCumulative(M);
        assertEq(c0, 0, "zero");
        vm.warp(t0 + 600);
        feed8.setPrice(2200e8);
        (uint256 p, uint256 c1) = oracle.update(M); // records 2000 for the past 600 s
        assertEq(p, 2200e18, "price");
        assertEq(c1, 2000e18 * 600, "cumulative");
        vm.warp(t0 + 1200);
        (uint256 c2,) = oracle.indexCumulative(M);
        assertEq(c2, 2000e18 * 600 + 2200e18 * 600, "extrapolated with the last price");
        assertEq(oracle.twapSince(M, c0, t0), 2100e18, "twap");
        assertEq(oracle.twapSince(M, c2, block.timestamp), 2200e18, "zero window: last price");
        vm.expectRevert(PriceOracle.InvalidWindow.selector);
        oracle.twapSince(M, c2 + 1, t0);
        PriceOracle.Accumulator memory a = oracle.lastRecorded(M);
        assertEq(a.lastPrice, 2200e18, "last price");
        assertEq(a.lastTimestamp, t0 + 600, "last time");
    }

    function test_updateSameBlockRecordsNewPrice() public {
        feed8.setPrice(2500e8);
        oracle.update(M);
        assertEq(oracle.lastRecorded(M).lastPrice, 2500e18, "updated within the block");
        assertEq(oracle.lastRecorded(M).cumulative, 0, "no time passed");
    }

    function test_replaceFeedKeepsAccumulator() public {
        vm.warp(block.timestamp + 100);
        SettableFeed other = new SettableFeed(8, "other", 2100e8);
        oracle.setFeed(M, address(other), 1 hours);
        assertEq(oracle.lastRecorded(M).cumulative, 2000e18 * 100, "accumulated before the switch");
        assertEq(oracle.getIndexPrice(M), 2100e18, "new feed");
    }
}

contract SettableFeedTest is TestBase {
    SettableFeed internal feed;

    function setUp() public {
        vm.warp(5_000);
        feed = new SettableFeed(8, "BTC / USD", 60_000e8);
    }

    function test_latestRoundData() public view {
        (uint80 id, int256 answer, uint256 startedAt, uint256 updatedAt, uint80 answeredIn) = feed.latestRoundData();
        assertEq(uint256(id), 1, "round");
        assertEq(answer, int256(60_000e8), "answer");
        assertEq(startedAt, 5_000, "started");
        assertEq(updatedAt, 5_000, "updated");
        assertEq(uint256(answeredIn), 1, "answered in");
        assertEq(feed.decimals(), 8, "decimals");
        assertEq(feed.description(), "BTC / USD", "description");
        assertEq(feed.version(), 1, "version");
        assertEq(feed.latestAnswer(), int256(60_000e8), "latestAnswer");
    }

    function test_setPrice_andRounds() public {
        vm.warp(6_000);
        vm.expectEmit(true, true, false, true, address(feed));
        emit SettableFeed.AnswerUpdated(61_000e8, 2, 6_000);
        feed.setPrice(61_000e8);
        assertEq(uint256(feed.latestRound()), 2, "round 2");
        (, int256 a1,, uint256 u1,) = feed.getRoundData(1);
        assertEq(a1, int256(60_000e8), "round 1 kept");
        assertEq(u1, 5_000, "round 1 time");
        vm.expectRevert(abi.encodeWithSelector(SettableFeed.UnknownRound.selector, uint80(3)));
        feed.getRoundData(3);
        vm.expectRevert(abi.encodeWithSelector(SettableFeed.UnknownRound.selector, uint80(0)));
        feed.getRoundData(0);
    }

    function test_setPrice_onlyOwnerOrUpdater() public {
        vm.expectRevert(abi.encodeWithSelector(SettableFeed.NotUpdater.selector, address(0xBAD)));
        vm.prank(address(0xBAD));
        feed.setPrice(1);
        feed.setUpdater(address(0xBAD), true);
        vm.prank(address(0xBAD));
        feed.setPrice(1);
        assertTrue(feed.isUpdater(address(0xBAD)), "updater");
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(0xBAD)));
        vm.prank(address(0xBAD));
        feed.setUpdater(address(0xBAD), false);
        vm.expectRevert(abi.encodeWithSelector(SettableFeed.NotUpdater.selector, address(0xC0DE)));
        vm.prank(address(0xC0DE));
        feed.setPriceWithTimestamp(1, 1);
    }

    function test_setPrice_outOfRange() public {
        vm.expectRevert(abi.encodeWithSelector(SettableFeed.AnswerOutOfRange.selector, type(int256).max));
        feed.setPrice(type(int256).max);
    }
}
