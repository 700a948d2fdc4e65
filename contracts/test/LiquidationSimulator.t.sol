// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {PositionManagerBase} from "../src/core/PositionManagerBase.sol";
import {LiquidationSimulator} from "../src/periphery/LiquidationSimulator.sol";

/// The keeper's batch simulation reports each liquidation as a call of its own would, each on the
/// state the previous ones leave.
contract LiquidationSimulatorTest is Fixture {
    LiquidationSimulator internal sim;

    function setUp() public override {
        super.setUp();
        sim = new LiquidationSimulator();
        _fund(alice, 100_000e18);
    }

    function test_simulate_reportsEachOutcomeInTurn() public {
        uint256 a = _open(alice, ETH, true, 1_000e18, 15e18);
        uint256 b = _open(alice, ETH, true, 1_000e18, 2e18); // stays healthy
        vm.roll(block.number + 1);
        _setPrice(ethFeed, 1840e18); // -8 %: the 15x long goes under
        uint256 size = _pos(a).size;
        uint256[] memory ids = new uint256[](4);
        ids[0] = a;
        ids[1] = a; // already liquidated by the first: gone
        ids[2] = b;
        ids[3] = 999;
        (bool[] memory ok, bytes[] memory out) = sim.simulate(address(pm), ids);

        assertTrue(ok[0], "liquidated");
        (uint256 closed, uint256 reward) = abi.decode(out[0], (uint256, uint256));
        assertEq(closed, size, "closed: all of it");
        uint256 penalty = size * 1840e18 / WAD * cfg.liquidationFeeRatio / WAD;
        assertEq(reward, penalty * cfg.liquidationRewardShare / WAD, "reward");
        assertEq(vault.freeCollateral(address(sim)), reward, "paid to the caller: the simulator");

        assertFalse(ok[1], "the second sees the first's effect");
        assertEq(
            keccak256(out[1]), keccak256(abi.encodeWithSelector(PositionManagerBase.PositionNotFound.selector, a)), "gone"
        );
        assertFalse(ok[2], "healthy");
        assertEq(bytes32(bytes4(out[2])), bytes32(PositionManagerBase.NotLiquidatable.selector), "healthy");
        assertFalse(ok[3], "unknown");
        assertEq(
            keccak256(out[3]),
            keccak256(abi.encodeWithSelector(PositionManagerBase.PositionNotFound.selector, 999)),
            "unknown id"
        );
    }
}
