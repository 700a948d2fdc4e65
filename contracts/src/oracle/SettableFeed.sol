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

    error AnswerOutOfRange(int256 answer);

    /// One slot per round: the latest round is read with a single SLOAD.
    struct Round {
        uint80 roundId;
        int112 answer;
        uint64 updatedAt;
    }

    uint8 public immutable override decimals;
    string public override description;
    Round private _latest;
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

    function latestRound() external view returns (uint80) {
        return _latest.roundId;
    }

    function latestAnswer() external view returns (int256) {
        return _latest.answer;
    }

    function latestRoundData() external view override returns (uint80, int256, uint256, uint256, uint80) {
        Round memory r = _latest;
        return (r.roundId, r.answer, r.updatedAt, r.updatedAt, r.roundId);
    }

    function getRoundData(uint80 roundId) external view override returns (uint80, int256, uint256, uint256, uint80) {
        Round memory r = _rounds[roundId];
        if (r.roundId == 0) revert UnknownRound(roundId);
        return (roundId, r.answer, r.updatedAt, r.updatedAt, roundId);
    }

    function _auth() private view {
        if (msg.sender != owner() && !isUpdater[msg.sender]) revert NotUpdater(msg.sender);
    }

    function _set(int256 answer, uint256 updatedAt) private {
        if (answer > type(int112).max || answer < type(int112).min) revert AnswerOutOfRange(answer);
        uint80 id = _latest.roundId + 1;
        Round memory r = Round(id, int112(answer), uint64(updatedAt));
        _latest = r;
        _rounds[id] = r;
        emit AnswerUpdated(answer, id, updatedAt);
    }
}
