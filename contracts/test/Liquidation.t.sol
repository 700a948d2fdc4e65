// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {IPositionManager} from "../src/interfaces/IPerpEx.sol";
import {PositionManager} from "../src/core/PositionManager.sol";

contract LiquidationTest is Fixture {
    uint256 internal id;

    function setUp() public override {
        super.setUp();
        _fund(alice, 100_000e18);
        id = _open(alice, ETH, true, 1_000e18, 10e18); // 10k notional, ~5 ETH
    }

    function test_notLiquidatableWhileHealthy_reverts() public {
        assertFalse(pm.isPositionLiquidatable(id), "healthy");
        (int256 margin, uint256 mm) = _expectedHealth(id, 2000e18);
        vm.expectRevert(abi.encodeWithSelector(PositionManager.NotLiquidatable.selector, id, margin, mm));
        vm.prank(keeper);
        pm.liquidatePosition(id);
    }

    function test_liquidate_afterOracleCrash_rewardsKeeperRefundsOwner() public {
        IPositionManager.Position memory p = _pos(id);
        _setPrice(ethFeed, 1830e18); // -8.5%: margin about 1.5% of notional < 2.5% maintenance
        assertTrue(pm.isPositionLiquidatable(id), "liquidatable");
        (int256 margin, uint256 mm) = _expectedHealth(id, 1830e18);
        assertLt(margin, int256(mm), "below maintenance");
        assertGt(margin, int256(0), "not bankrupt");

        uint256 reward = p.size * 1830e18 / 1e18 * 0.01e18 / 1e18;
        (uint256 exitQuote,,,) = ethAmm.quoteClose(true, p.size);
        int256 pnl = int256(exitQuote) - int256(p.notional);
        int256 equity = int256(p.collateral) + pnl;
        // the vAMM still sits at ~2000, so the unwind is profitable against the index-based margin
        uint256 refund = uint256(equity) - reward;
        uint256 freeBefore = vault.freeCollateral(alice);

        vm.expectEmit(true, true, true, true, address(nft));
        emit PositionBurned(id, alice, ETH);
        vm.expectEmit(true, true, true, true, address(pm));
        emit PositionLiquidated(id, alice, ETH, keeper, exitQuote * 1e18 / p.size, pnl, reward, refund, 0);
        vm.prank(keeper);
        pm.liquidatePosition(id);

        assertEq(vault.freeCollateral(keeper), reward, "keeper reward");
        assertEq(vault.freeCollateral(alice), freeBefore + refund, "owner refund");
        assertEq(vault.totalLocked(), 0, "released");
        assertEq(vault.openInterest(), 0, "open interest");
        assertEq(_pos(id).size, 0, "deleted");
        assertFalse(nft.exists(id), "burned");
        assertFalse(pm.isPositionLiquidatable(id), "gone");
        assertApproxEq(pm.markPrice(ETH), 2000e18, 1e9, "unwound on the vAMM");
        _assertSolvent();

        vm.expectRevert(abi.encodeWithSelector(PositionManager.PositionNotFound.selector, id));
        pm.liquidatePosition(id);
    }

    function test_liquidate_bankrupt_shortfallToInsurance() public {
        // the vAMM price falls too (another trader shorts), then the oracle crashes
        _fund(bob, 1_000_000e18);
        _fund(bob, 1_000_000e18);
        for (uint256 i; i < 6; ++i) {
            _setPrice(ethFeed, pm.markPrice(ETH));
            _open(bob, ETH, false, 300_000e18, 10e18);
        }
        _setPrice(ethFeed, 1700e18);
        IPositionManager.Position memory p = _pos(id);
        (uint256 exitQuote,,,) = ethAmm.quoteClose(true, p.size);
        int256 equity = int256(p.collateral) + int256(exitQuote) - int256(p.notional);
        assertLt(equity, int256(0), "bankrupt");
        uint256 reward = p.size * 1700e18 / 1e18 * 0.01e18 / 1e18;
        uint256 insBefore = vault.insuranceFund();
        uint256 freeBefore = vault.freeCollateral(alice);
        vm.prank(keeper);
        pm.liquidatePosition(id);
        assertEq(vault.freeCollateral(keeper), reward, "keeper still paid");
        assertEq(vault.freeCollateral(alice), freeBefore, "no refund");
        assertEq(vault.insuranceFund(), insBefore - reward - uint256(-equity), "insurance covers the shortfall");
        assertEq(vault.badDebt(), 0, "no uncovered debt");
        _assertSolvent();
    }

    function test_liquidate_badDebtWhenInsuranceEmpty() public {
        IPositionManager.Position memory p = _pos(id);
        // make the unwind bankrupt as well: move the vAMM down with shorts
        _fund(bob, 1_000_000e18);
        _fund(bob, 1_000_000e18);
        for (uint256 i; i < 6; ++i) {
            _setPrice(ethFeed, pm.markPrice(ETH));
            _open(bob, ETH, false, 300_000e18, 10e18);
        }
        _setPrice(ethFeed, 1700e18);
        (uint256 exitQuote,,,) = ethAmm.quoteClose(true, p.size);
        int256 equity = int256(p.collateral) + int256(exitQuote) - int256(p.notional);
        uint256 reward = p.size * 1700e18 / 1e18 * 0.01e18 / 1e18;
        vault.withdrawInsurance(vault.insuranceFund() - 10e18, address(this)); // leave 10 vUSDT
        vm.prank(keeper);
        pm.liquidatePosition(id);
        uint256 shortfall = reward + uint256(-equity);
        assertEq(vault.insuranceFund(), 0, "insurance drained");
        assertEq(vault.badDebt(), shortfall - 10e18, "uncovered shortfall recorded");
        assertEq(vault.freeCollateral(keeper), reward, "keeper still paid");
        _assertSolvent();
    }

    function test_liquidate_shortAfterOracleSpike() public {
        uint256 sid = _open(alice, BTC, false, 1_000e18, 20e18);
        assertFalse(pm.isPositionLiquidatable(sid), "healthy");
        _setPrice(btcFeed, 61_500e18);
        assertTrue(pm.isPositionLiquidatable(sid), "liquidatable");
        vm.prank(keeper);
        pm.liquidatePosition(sid);
        _assertSolvent();
    }

    function test_liquidate_worksWhenPaused() public {
        pm.setMarketPaused(ETH, true);
        _setPrice(ethFeed, 1800e18);
        vm.prank(keeper);
        pm.liquidatePosition(id);
    }

    function test_liquidate_revertsOnStaleOracle() public {
        _setPrice(ethFeed, 1800e18);
        vm.warp(block.timestamp + cfg.maxStaleness + 1);
        vm.expectPartialRevert(bytes4(keccak256("StalePrice(bytes32,uint256,uint256)")));
        pm.liquidatePosition(id);
    }

    function test_getPositionsHealth_batch() public {
        _fund(bob, 10_000e18);
        uint256 b1 = _open(bob, ETH, false, 500e18, 4e18);
        uint256 b2 = _open(bob, BTC, true, 500e18, 20e18);
        _setPrice(ethFeed, 1830e18);
        uint256[] memory ids = new uint256[](4);
        ids[0] = id;
        ids[1] = b1;
        ids[2] = 777;
        ids[3] = b2;
        IPositionManager.PositionHealth[] memory h = pm.getPositionsHealth(ids);
        assertEq(h.length, 4, "len");
        assertTrue(h[0].exists && h[0].liquidatable, "alice liquidatable");
        assertTrue(h[1].exists && !h[1].liquidatable, "bob's short fine");
        assertFalse(h[2].exists, "unknown");
        assertEq(h[2].tokenId, 777, "unknown id echoed");
        assertEq(h[3].indexPrice, 60_000e18, "btc index");
        (int256 margin, uint256 mm) = _expectedHealth(id, 1830e18);
        assertEq(h[0].margin, margin, "margin");
        assertEq(h[0].maintenanceMargin, mm, "mm");
        assertEq(h[0].indexPrice, 1830e18, "index");
        IPositionManager.PositionHealth memory one = pm.getPositionHealth(b1);
        assertEq(one.margin, h[1].margin, "single == batch");
    }

    function test_getPositionsHealth_staleOracleDoesNotRevert() public {
        vm.warp(block.timestamp + cfg.maxStaleness + 1);
        btcFeed.setPrice(60_000e8); // BTC fresh, ETH stale
        uint256[] memory ids = new uint256[](1);
        ids[0] = id;
        IPositionManager.PositionHealth[] memory h = pm.getPositionsHealth(ids);
        assertTrue(h[0].exists, "exists");
        assertEq(h[0].indexPrice, 0, "no price");
        assertFalse(h[0].liquidatable, "not liquidatable without a price");
        assertFalse(pm.isPositionLiquidatable(id), "single view agrees");
    }
}
