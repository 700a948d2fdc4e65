// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Simulates many liquidations in one eth_call. Never deployed.
/// @notice A keeper puts this code at an address of its choosing with an eth_call state override
/// and calls `simulate` on the pending block: each liquidatePosition runs on the state the
/// previous ones leave (as the keeper's transactions will, in that order), and its outcome comes
/// back: the call's return data (closed, reward) or its revert data. A node answers a "pending"
/// call by first executing the transactions it holds for the next block; one such execution then
/// serves a whole batch instead of one liquidation.
contract LiquidationSimulator {
    function simulate(address positionManager, uint256[] calldata tokenIds)
        external
        returns (bool[] memory ok, bytes[] memory results)
    {
        ok = new bool[](tokenIds.length);
        results = new bytes[](tokenIds.length);
        for (uint256 i; i < tokenIds.length; ++i) {
            (ok[i], results[i]) =
                positionManager.call(abi.encodeWithSignature("liquidatePosition(uint256)", tokenIds[i]));
        }
    }
}
