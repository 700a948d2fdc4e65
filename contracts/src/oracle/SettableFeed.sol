// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {AggregatorV3Interface} from "../interfaces/AggregatorV3Interface.sol";

/// @title A Chainlink-compatible price feed whose answer is set by its owner or an updater.
/// @notice For local chains, tests and demos. Any int256 may be set (the oracle rejects
/// non-positive answers), which lets tests exercise the oracle's checks.
contract SettableFeed is AggregatorV3Interface, Ownable2Step {
    error NotUpdater(address caller);
    error UnknownRound(uint80 roundId);

    /// Same shape as Chainlink's AnswerUpdated.
    event AnswerUpdated(int256 indexed current, uint256 indexed roundId, uint256 updatedAt);
    event UpdaterSet(address indexed updater, bool allowed);

    struct Round {
        int256 answer;
        uint64 updatedAt;
    }

    uint8 public immutable override decimals;
    string public override description;
    uint80 public latestRound;
    mapping(uint80 => Round) private _rounds;
    mapping(address => bool) public isUpdater;

    constructor(uint8 decimals_, string memory description_, int256 initialAnswer) Ownable(msg.sender) {
        decimals = decimals_;
        description = description_;
        _set(initialAnswer, block.timestamp);
    }

    function version() external pure override returns (uint256) {
        return 1;
    }

    function setUpdater(address updater, bool allowed) external onlyOwner {
        isUpdater[updater] = allowed;
        emit UpdaterSet(updater, allowed);
    }

    /// @notice Publish a new answer (in this feed's `decimals`) stamped with the current block time.
    function setPrice(int256 answer) external {
        _auth();
        _set(answer, block.timestamp);
    }

    /// @notice Publish a new answer with an explicit `updatedAt` (tests of staleness).
    function setPriceWithTimestamp(int256 answer, uint256 updatedAt) external {
        _auth();
        _set(answer, updatedAt);
    }

    function latestAnswer() external view returns (int256) {
        return _rounds[latestRound].answer;
    }

    function latestRoundData() external view override returns (uint80, int256, uint256, uint256, uint80) {
        uint80 id = latestRound;
        Round memory r = _rounds[id];
        return (id, r.answer, r.updatedAt, r.updatedAt, id);
    }

    function getRoundData(uint80 roundId) external view override returns (uint80, int256, uint256, uint256, uint80) {
        if (roundId == 0 || roundId > latestRound) revert UnknownRound(roundId);
        Round memory r = _rounds[roundId];
        return (roundId, r.answer, r.updatedAt, r.updatedAt, roundId);
    }

    function _auth() private view {
        if (msg.sender != owner() && !isUpdater[msg.sender]) revert NotUpdater(msg.sender);
    }

    function _set(int256 answer, uint256 updatedAt) private {
        uint80 id = latestRound + 1;
        latestRound = id;
        _rounds[id] = Round(answer, uint64(updatedAt));
        emit AnswerUpdated(answer, id, updatedAt);
    }
}
