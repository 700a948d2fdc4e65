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
        oracle.getTwap(M, 1_000_000);
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
        oracle.getTwap(bytes32(0), 0);
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

    function test_twap_weightsEveryRoundByHowLongItStood() public {
        uint256 t0 = block.timestamp; // round 1: 2000 since t0
        vm.warp(t0 + 600);
        feed8.setPrice(2200e8); // round 2
        vm.warp(t0 + 1200);
        assertEq(oracle.getTwap(M, t0), 2100e18, "600 s at 2000, 600 s at 2200");
        assertEq(oracle.getTwap(M, t0 + 600), 2200e18, "window inside the last round");
        assertEq(oracle.getTwap(M, t0 + 300), uint256(2000e18 * 300 + 2200e18 * 600) / 900, "window starts mid-round");
        assertEq(oracle.getTwap(M, block.timestamp), 2200e18, "empty window: the current price");
    }

    /// Nobody recorded anything between the rounds: the TWAP still sees every answer the feed
    /// published, for as long as it stood (no sampling by whoever pokes the oracle).
    function test_twap_oneBlockSpikeCountsOnlyItsSeconds() public {
        oracle.setFeed(M, address(feed8), 1 days);
        uint256 t0 = block.timestamp;
        vm.warp(t0 + 3 hours);
        feed8.setPrice(2000e8);
        vm.warp(t0 + 3 hours + 12);
        feed8.setPrice(3500e8); // a one-block spike
        vm.warp(t0 + 3 hours + 24);
        feed8.setPrice(2000e8);
        vm.warp(t0 + 7 hours);
        uint256 twap = oracle.getTwap(M, t0);
        assertEq(twap, uint256(2000e18) + uint256(1500e18 * 12) / (7 hours), "the spike weighs 12 s of 7 h");
        assertLt(twap, 2002e18, "about the feed's level");
    }

    function test_twap_unrecordedMoveCounts() public {
        oracle.setFeed(M, address(feed8), 1 days);
        uint256 t0 = block.timestamp;
        vm.warp(t0 + 4 hours);
        feed8.setPrice(2200e8); // +10% half-way, nobody calls the oracle
        vm.warp(t0 + 8 hours);
        assertEq(oracle.getTwap(M, t0), 2100e18, "the move is in the average");
    }

    function test_twap_coversOnlyTheRoundsItMayRead() public {
        uint256 t0 = block.timestamp;
        uint256 n = oracle.MAX_TWAP_ROUNDS();
        for (uint256 i = 1; i <= n + 5; ++i) {
            vm.warp(t0 + i * 60);
            feed8.setPrice(int256(2000e8 + i * 1e8));
        }
        vm.warp(block.timestamp + 60);
        // the last n rounds each stood 60 s: the average of their prices
        uint256 sum;
        for (uint256 i = 6; i <= n + 5; ++i) {
            sum += (2000 + i) * 1e18;
        }
        assertEq(oracle.getTwap(M, t0), sum / n, "average over the covered part");
    }

    function test_twap_stopsAtAnInvalidRound() public {
        uint256 t0 = block.timestamp;
        vm.warp(t0 + 100);
        feed8.setPrice(-1); // round 2: invalid
        vm.warp(t0 + 200);
        feed8.setPrice(2100e8); // round 3
        vm.warp(t0 + 300);
        assertEq(oracle.getTwap(M, t0), 2100e18, "rounds before the invalid one are not used");
    }

    function test_twap_rejectsAnInvalidLatestAnswer() public {
        feed8.setPrice(0);
        vm.expectRevert(abi.encodeWithSelector(PriceOracle.InvalidPrice.selector, M, int256(0)));
        oracle.getTwap(M, 0);
    }

    function test_replaceFeed() public {
        SettableFeed other = new SettableFeed(8, "other", 2100e8);
        oracle.setFeed(M, address(other), 1 hours);
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
