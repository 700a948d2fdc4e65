// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @title PriceOracle: per-market index price over Chainlink AggregatorV3-style feeds.
/// @notice Answers are scaled to 18 decimals; stale (older than the market's `maxStaleness`) and
/// non-positive answers are rejected. Index TWAPs come from the feed's own round history
/// (`getRoundData`), not from samples somebody recorded: every answer the feed published counts
/// for exactly as long as it stood, whether or not anyone looked at it in the meantime.
contract PriceOracle is Ownable2Step {
    error FeedNotSet(bytes32 marketId);
    error InvalidFeed(address feed);
    error InvalidStaleness();
    error InvalidPrice(bytes32 marketId, int256 answer);
    error StalePrice(bytes32 marketId, uint256 updatedAt, uint256 maxStaleness);
    error InvalidWindow();

    event FeedSet(bytes32 indexed marketId, address indexed feed, uint8 decimals, uint32 maxStaleness);

    /// Rounds read back at most per TWAP (gas bound). A window the rounds do not cover (a feed
    /// that published more often) is averaged over the part they cover, ending now.
    uint256 public constant MAX_TWAP_ROUNDS = 24;

    struct Feed {
        address feed; // AggregatorV3Interface
        uint8 decimals;
        uint32 maxStaleness; // seconds
    }

    mapping(bytes32 => Feed) private _feeds;

    constructor() Ownable(msg.sender) {}

    // ---------------------------------------------------------------- admin

    /// @notice Set (or replace) the feed of a market. The feed must currently answer a valid price.
    function setFeed(bytes32 marketId, address feed, uint32 maxStaleness) external onlyOwner {
        if (feed == address(0) || feed.code.length == 0) revert InvalidFeed(feed);
        if (maxStaleness == 0) revert InvalidStaleness();
        uint8 dec = AggregatorV3Interface(feed).decimals();
        if (dec > 36) revert InvalidFeed(feed);
        Feed memory f = Feed(feed, dec, maxStaleness);
        _read(marketId, f);
        _feeds[marketId] = f;
        emit FeedSet(marketId, feed, dec, maxStaleness);
    }

    // ---------------------------------------------------------------- reads

    function feedOf(bytes32 marketId) external view returns (address) {
        return _feeds[marketId].feed;
    }

    function feedConfig(bytes32 marketId) external view returns (Feed memory) {
        return _feeds[marketId];
    }

    /// @notice Current index price (WAD) read from the feed, validated.
    function getIndexPrice(bytes32 marketId) public view returns (uint256) {
        Feed memory f = _feeds[marketId];
        if (f.feed == address(0)) revert FeedNotSet(marketId);
        return _read(marketId, f);
    }

    /// @notice Time-weighted average index price over [from, now], from the feed's rounds: each
    /// answer holds from its `updatedAt` until the next round's. The latest answer must be fresh
    /// (as for getIndexPrice). Walks back at most MAX_TWAP_ROUNDS rounds and stops early at a
    /// round the feed cannot give (a phase boundary, an invalid answer); the average then covers
    /// the part of the window the rounds it read cover. `from >= now` gives the current price.
    function getTwap(bytes32 marketId, uint256 from) external view returns (uint256) {
        Feed memory f = _feeds[marketId];
        if (f.feed == address(0)) revert FeedNotSet(marketId);
        AggregatorV3Interface feed = AggregatorV3Interface(f.feed);
        (uint80 roundId, int256 answer,, uint256 updatedAt,) = feed.latestRoundData();
        uint256 price = _validate(marketId, f, answer, updatedAt);
        uint256 end = block.timestamp;
        if (from >= end) return price;
        uint256 sum;
        uint256 start;
        for (uint256 i;; ++i) {
            start = updatedAt > from ? updatedAt : from;
            if (start > end) start = end; // a round stamped after its successor: no weight
            sum += price * (end - start);
            if (start == from || i + 1 == MAX_TWAP_ROUNDS || roundId <= 1) break;
            end = start;
            (bool ok, uint256 p, uint256 t) = _round(feed, roundId - 1, f.decimals);
            if (!ok) break;
            unchecked {
                --roundId;
            }
            price = p;
            updatedAt = t;
        }
        uint256 span = block.timestamp - start;
        return span == 0 ? price : sum / span;
    }

    // ---------------------------------------------------------------- internals

    function _read(bytes32 marketId, Feed memory f) private view returns (uint256) {
        (, int256 answer,, uint256 updatedAt,) = AggregatorV3Interface(f.feed).latestRoundData();
        return _validate(marketId, f, answer, updatedAt);
    }

    function _validate(bytes32 marketId, Feed memory f, int256 answer, uint256 updatedAt)
        private
        view
        returns (uint256 p)
    {
        if (answer <= 0 || uint256(answer) > type(uint128).max) revert InvalidPrice(marketId, answer);
        if (updatedAt == 0 || updatedAt + f.maxStaleness < block.timestamp) {
            revert StalePrice(marketId, updatedAt, f.maxStaleness);
        }
        p = _scale(uint256(answer), f.decimals);
        if (p == 0 || p > type(uint128).max) revert InvalidPrice(marketId, answer);
    }

    /// One historical round, scaled; ok = false when the feed cannot give it or it is invalid.
    function _round(AggregatorV3Interface feed, uint80 roundId, uint8 decimals)
        private
        view
        returns (bool ok, uint256 price, uint256 updatedAt)
    {
        try feed.getRoundData(roundId) returns (uint80, int256 answer, uint256, uint256 t, uint80) {
            if (answer <= 0 || uint256(answer) > type(uint128).max || t == 0) return (false, 0, 0);
            price = _scale(uint256(answer), decimals);
            if (price == 0 || price > type(uint128).max) return (false, 0, 0);
            return (true, price, t);
        } catch {
            return (false, 0, 0);
        }
    }

    function _scale(uint256 answer, uint8 decimals) private pure returns (uint256) {
        if (decimals < 18) return answer * 10 ** (18 - decimals);
        if (decimals > 18) return answer / 10 ** (decimals - 18);
        return answer;
    }
}
