// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @title PriceOracle: per-market index price over Chainlink AggregatorV3-style feeds.
/// @notice Answers are scaled to 18 decimals; stale (older than the market's `maxStaleness`) and
/// non-positive answers are rejected. A cumulative index-price accumulator (price x seconds,
/// Uniswap-v2 style: the price recorded at one update holds until the next) gives index TWAPs;
/// anyone may call `update`, and the PositionManager does on every trade and funding update.
contract PriceOracle is Ownable2Step {
    error FeedNotSet(bytes32 marketId);
    error InvalidFeed(address feed);
    error InvalidStaleness();
    error InvalidPrice(bytes32 marketId, int256 answer);
    error StalePrice(bytes32 marketId, uint256 updatedAt, uint256 maxStaleness);
    error InvalidWindow();

    event FeedSet(bytes32 indexed marketId, address indexed feed, uint8 decimals, uint32 maxStaleness);

    struct Feed {
        address feed; // AggregatorV3Interface
        uint8 decimals;
        uint32 maxStaleness; // seconds
    }

    struct Accumulator {
        uint192 cumulative; // sum of price (WAD) x seconds
        uint64 lastTimestamp;
        uint128 lastPrice; // WAD, recorded at lastTimestamp
    }

    mapping(bytes32 => Feed) private _feeds;
    mapping(bytes32 => Accumulator) private _acc;

    constructor() Ownable(msg.sender) {}

    // ---------------------------------------------------------------- admin

    /// @notice Set (or replace) the feed of a market. The feed must currently answer a valid price.
    function setFeed(bytes32 marketId, address feed, uint32 maxStaleness) external onlyOwner {
        if (feed == address(0) || feed.code.length == 0) revert InvalidFeed(feed);
        if (maxStaleness == 0) revert InvalidStaleness();
        uint8 dec = AggregatorV3Interface(feed).decimals();
        if (dec > 36) revert InvalidFeed(feed);
        Feed memory f = Feed(feed, dec, maxStaleness);
        uint256 price = _read(marketId, f);
        _feeds[marketId] = f;
        Accumulator storage a = _acc[marketId];
        if (a.lastTimestamp == 0) {
            a.lastTimestamp = uint64(block.timestamp);
            a.lastPrice = uint128(price);
        } else {
            _accumulate(a, price);
        }
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

    /// @notice Record the current feed price into the TWAP accumulator; returns it and the
    /// cumulative value at this block.
    function update(bytes32 marketId) external returns (uint256 price, uint256 cumulative) {
        price = getIndexPrice(marketId);
        cumulative = _accumulate(_acc[marketId], price);
    }

    /// @notice The accumulator extrapolated to now with the last recorded price.
    function indexCumulative(bytes32 marketId) public view returns (uint256 cumulative, uint256 timestamp) {
        Accumulator memory a = _acc[marketId];
        if (a.lastTimestamp == 0) revert FeedNotSet(marketId);
        cumulative = uint256(a.cumulative) + uint256(a.lastPrice) * (block.timestamp - a.lastTimestamp);
        timestamp = block.timestamp;
    }

    /// @notice Index TWAP between an earlier accumulator reading and now.
    function twapSince(bytes32 marketId, uint256 fromCumulative, uint256 fromTimestamp)
        external
        view
        returns (uint256)
    {
        (uint256 cum, uint256 ts) = indexCumulative(marketId);
        if (fromTimestamp > ts || fromCumulative > cum) revert InvalidWindow();
        if (fromTimestamp == ts) return _acc[marketId].lastPrice;
        return (cum - fromCumulative) / (ts - fromTimestamp);
    }

    function lastRecorded(bytes32 marketId) external view returns (Accumulator memory) {
        return _acc[marketId];
    }

    // ---------------------------------------------------------------- internals

    function _read(bytes32 marketId, Feed memory f) private view returns (uint256) {
        (, int256 answer,, uint256 updatedAt,) = AggregatorV3Interface(f.feed).latestRoundData();
        if (answer <= 0) revert InvalidPrice(marketId, answer);
        if (updatedAt == 0 || updatedAt + f.maxStaleness < block.timestamp) {
            revert StalePrice(marketId, updatedAt, f.maxStaleness);
        }
        uint256 p = uint256(answer);
        if (f.decimals < 18) p = p * 10 ** (18 - f.decimals);
        else if (f.decimals > 18) p = p / 10 ** (f.decimals - 18);
        if (p == 0 || p > type(uint128).max) revert InvalidPrice(marketId, answer);
        return p;
    }

    /// No event here on purpose: this runs inside every trade, liquidation and funding update.
    function _accumulate(Accumulator storage a, uint256 price) private returns (uint256 cum) {
        uint64 last = a.lastTimestamp;
        uint128 lastPrice = a.lastPrice;
        cum = a.cumulative;
        if (block.timestamp > last) {
            cum += uint256(lastPrice) * (block.timestamp - last);
            a.cumulative = uint192(cum);
            a.lastTimestamp = uint64(block.timestamp);
            if (price != lastPrice) a.lastPrice = uint128(price);
        } else if (price != lastPrice) {
            a.lastPrice = uint128(price);
        }
    }
}
