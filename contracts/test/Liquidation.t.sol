// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {IPositionManager} from "../src/interfaces/IPerpEx.sol";
import {PositionManager} from "../src/core/PositionManager.sol";
import {PositionManagerBase} from "../src/core/PositionManagerBase.sol";
import {VirtualAMM} from "../src/core/VirtualAMM.sol";

contract LiquidationTest is Fixture {
    uint256 internal id;

    function setUp() public override {
        super.setUp();
        _fund(alice, 100_000e18);
        id = _open(alice, ETH, true, 1_000e18, 10e18); // 10k notional, ~5 ETH
        vm.roll(block.number + 1);
    }

    function _penalty(uint256 size, uint256 index) internal view returns (uint256 reward, uint256 insurance) {
        uint256 penalty = size * index / 1e18 * cfg.liquidationFeeRatio / 1e18;
        reward = penalty * cfg.liquidationRewardShare / 1e18;
        insurance = penalty - reward;
    }

    function test_notLiquidatableWhileHealthy_reverts() public {
        assertFalse(pm.isPositionLiquidatable(id), "healthy");
        (int256 margin, uint256 mm) = _expectedHealth(id, 2000e18);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.NotLiquidatable.selector, id, margin, mm));
        vm.prank(keeper);
        pm.liquidatePosition(id);
    }

    function test_liquidate_afterOracleCrash_splitsPenaltyRefundsOwner() public {
        IPositionManager.Position memory p = _pos(id);
        _setPrice(ethFeed, 1830e18); // -8.5%: margin about 1.5% of notional < 2.5% maintenance
        assertTrue(pm.isPositionLiquidatable(id), "liquidatable");
        (int256 margin, uint256 mm) = _expectedHealth(id, 1830e18);
        assertLt(margin, int256(mm), "below maintenance");
        assertGt(margin, int256(0), "not bankrupt");

        (uint256 reward, uint256 insFee) = _penalty(p.size, 1830e18);
        (uint256 exitQuote,,,) = ethAmm.quoteClose(true, p.size);
        int256 pnl = int256(exitQuote) - int256(p.notional);
        int256 equity = int256(p.collateral) + pnl;
        // the vAMM still sits at ~2000, so the unwind is profitable against the index-based margin
        uint256 refund = uint256(equity) - reward - insFee;
        uint256 freeBefore = vault.freeCollateral(alice);
        uint256 insBefore = vault.insuranceFund();

        vm.expectEmit(true, true, true, true, address(nft));
        emit PositionBurned(id, alice, ETH);
        _expectLiquidated(
            LiqEvent(id, alice, ETH, keeper, exitQuote * 1e18 / p.size, pnl, reward, refund, 0, p.size, 0, 0, insFee)
        );
        vm.prank(keeper);
        (uint256 closed, uint256 paid) = pm.liquidatePosition(id);

        assertEq(closed, p.size, "returns the size unwound: all of it");
        assertEq(paid, reward, "returns the caller's reward");
        assertEq(vault.freeCollateral(keeper), reward, "keeper reward");
        assertEq(vault.insuranceFund(), insBefore + insFee, "insurance share of the penalty");
        assertEq(vault.freeCollateral(alice), freeBefore + refund, "owner refund");
        assertEq(vault.totalLocked(), 0, "released");
        assertEq(vault.openInterest(), 0, "open interest");
        assertEq(_pos(id).size, 0, "deleted");
        assertFalse(nft.exists(id), "burned");
        assertFalse(pm.isPositionLiquidatable(id), "gone");
        assertApproxEq(pm.markPrice(ETH), 2000e18, 1e9, "unwound on the vAMM");
        _assertSolvent();

        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.PositionNotFound.selector, id));
        pm.liquidatePosition(id);
    }

    /// The vAMM is pushed down over several blocks (each within the per-block limit) while the
    /// index follows, then the index crashes: the unwind cannot pay the loss.
    function _pushMarkDown(uint256 rounds) internal {
        for (uint256 i; i < 2; ++i) {
            _fund(bob, 1_000_000e18);
        }
        for (uint256 i; i < rounds; ++i) {
            vm.roll(block.number + 1);
            _setPrice(ethFeed, pm.markPrice(ETH));
            _open(bob, ETH, false, 200_000e18, 10e18); // ~2% a block
        }
        vm.roll(block.number + 1);
    }

    function test_liquidate_bankrupt_shortfallToInsurance() public {
        _pushMarkDown(9);
        _setPrice(ethFeed, pm.markPrice(ETH) * 1005 / 1000); // the index follows the mark down
        IPositionManager.Position memory p = _pos(id);
        (uint256 exitQuote,,,) = ethAmm.quoteClose(true, p.size);
        int256 equity = int256(p.collateral) + int256(exitQuote) - int256(p.notional);
        assertLt(equity, int256(0), "bankrupt");
        (uint256 reward,) = _penalty(p.size, pm.indexPrice(ETH));
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
        _pushMarkDown(9);
        uint256 index = pm.markPrice(ETH) * 1005 / 1000;
        _setPrice(ethFeed, index);
        index = pm.indexPrice(ETH);
        IPositionManager.Position memory p = _pos(id);
        (uint256 exitQuote,,,) = ethAmm.quoteClose(true, p.size);
        int256 equity = int256(p.collateral) + int256(exitQuote) - int256(p.notional);
        (uint256 reward,) = _penalty(p.size, index);
        uint256 take = vault.insuranceFund() - 10e18; // leave 10 vUSDT
        vault.announceInsuranceWithdrawal(take, address(this));
        vm.warp(block.timestamp + vault.INSURANCE_WITHDRAWAL_DELAY());
        _setPrice(ethFeed, index);
        vault.withdrawInsurance(take, address(this));
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
        assertEq(_pos(sid).size, 0, "gone");
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

    // ---------------------------------------------------------------- bounded unwind

    /// A position whose full unwind would pass the vAMM's per-trade limit is liquidated in parts:
    /// each call unwinds what fits, the rest stays open (PositionReduced) for the next call.
    function test_partialLiquidation_whenTheFullUnwindPassesTheLimit() public {
        _fund(bob, 1_000_000e18);
        uint256 big = _open(bob, ETH, true, 200_000e18, 10e18); // 2M notional, ~2% of the pool
        vm.roll(block.number + 1);
        ethAmm.setParams(cfg.feeRatio, 0.01e18); // per-trade limit 1%
        _setPrice(ethFeed, 1820e18);
        assertTrue(pm.isPositionLiquidatable(big), "liquidatable");
        IPositionManager.Position memory before = _pos(big);
        uint256 markBefore = pm.markPrice(ETH);

        vm.recordLogs();
        uint256 freeBefore = vault.freeCollateral(keeper);
        vm.prank(keeper);
        (uint256 closed, uint256 reward) = pm.liquidatePosition(big);
        IPositionManager.Position memory after1 = _pos(big);
        assertEq(closed, before.size - after1.size, "returns the part unwound");
        assertEq(reward, vault.freeCollateral(keeper) - freeBefore, "returns the reward paid");
        (uint256 expected,) = _penalty(closed, pm.indexPrice(ETH));
        assertEq(reward, expected, "the keeper's share of the penalty on the part unwound");
        assertGt(after1.size, 0, "part of it left");
        assertLt(after1.size, before.size, "part of it unwound");
        assertLe(markBefore - pm.markPrice(ETH), markBefore / 100 + 1, "the mark moved at most 1%");
        assertEq(
            after1.notional, before.notional - before.notional * (before.size - after1.size) / before.size, "notional"
        );
        assertEq(after1.entryFundingIndex, pm.cumulativeFundingIndex(ETH), "funding settled");
        assertTrue(nft.exists(big), "still open");
        assertTrue(ethAmm.isRestricted(), "restricted for the rest of the block");

        // the rest stays open; later calls continue while it is liquidatable (the partial unwind
        // may also have brought it back above maintenance)
        uint256 calls = 1;
        while (_pos(big).size != 0 && pm.isPositionLiquidatable(big) && calls < 20) {
            vm.roll(block.number + 1);
            vm.prank(keeper);
            pm.liquidatePosition(big);
            ++calls;
        }
        assertFalse(pm.isPositionLiquidatable(big), "liquidated down to a healthy rest, or gone");
        assertEq(vault.openInterest(), _pos(id).notional + _pos(big).notional, "open interest follows");
        _assertSolvent();
    }

    /// A liquidation never pushes the mark past index * (1 - maxSpread) when selling a long.
    function test_liquidation_neverPushesMarkPastTheIndexBand() public {
        uint256 lev = _open(alice, ETH, true, 1_000e18, 20e18);
        _pushMarkDown(6); // the mark is now about 11% below 2000; the index follows it
        uint256 mark = pm.markPrice(ETH);
        // the index comes back up to 3% above the mark: the 20x long opened at 2000 is bankrupt
        // at it, while the mark already sits below index * 0.99
        _setPrice(ethFeed, mark * 1e18 / 0.97e18);
        assertTrue(pm.isPositionLiquidatable(lev), "liquidatable");
        uint256 bound = pm.indexPrice(ETH) * 0.99e18 / 1e18;
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.LiquidationOutOfBounds.selector, lev, mark, bound));
        vm.prank(keeper);
        pm.liquidatePosition(lev);
        // once the mark is back inside the band, the liquidation goes through
        vm.roll(block.number + 1);
        _setPrice(ethFeed, mark * 1e18 / 0.995e18);
        vm.prank(keeper);
        pm.liquidatePosition(lev);
        assertGe(pm.markPrice(ETH), pm.indexPrice(ETH) * 0.99e18 / 1e18, "not past the band");
    }

    /// While the index keeps a liquidatable position's equity above its penalty, the unwind never
    /// pushes the mark below the price where that stops being true: the insurance fund pays
    /// nothing, whoever moved the mark first (the review's self-liquidation).
    function test_liquidation_neverMakesInsurancePayWhileTheIndexKeepsThePositionSolvent() public {
        _fund(bob, 1_000_000e18);
        uint256 v = _open(alice, ETH, true, 10_000e18, 20e18); // 200k notional
        vm.roll(block.number + 1);
        _setPrice(ethFeed, 1945e18); // the index: margin between the penalty (2%) and maintenance
        (int256 margin, uint256 mm) = _expectedHealth(v, 1945e18);
        IPositionManager.Position memory p = _pos(v);
        uint256 penalty = p.size * 1945e18 / 1e18 * cfg.liquidationFeeRatio / 1e18;
        assertLt(margin, int256(mm), "liquidatable");
        assertGt(margin, int256(penalty), "solvent after the penalty at the index");
        // somebody pushes the mark below the index first
        uint256 s = _open(bob, ETH, false, 800_000e18, 2e18);
        s;
        uint256 insBefore = vault.insuranceFund();
        vm.prank(keeper);
        try pm.liquidatePosition(v) {} catch {}
        vm.roll(block.number + 1);
        for (uint256 i; i < 5 && _pos(v).size != 0; ++i) {
            vm.prank(keeper);
            try pm.liquidatePosition(v) {} catch {}
            vm.roll(block.number + 1);
        }
        assertGe(vault.insuranceFund(), insBefore, "the insurance fund did not pay");
        assertEq(vault.badDebt(), 0, "no bad debt");
        _assertSolvent();
    }

    function test_liquidation_callerPriceLimit() public {
        _setPrice(ethFeed, 1830e18);
        (, uint256 exitPrice,,) = ethAmm.quoteClose(true, _pos(id).size);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.SlippageExceeded.selector, exitPrice, exitPrice + 1));
        vm.prank(keeper);
        pm.liquidatePosition(id, exitPrice + 1);
        vm.prank(keeper);
        pm.liquidatePosition(id, exitPrice);
        assertEq(_pos(id).size, 0, "liquidated within the bound");
    }

    /// Restriction mode: after a liquidation, no open or close in that market for the rest of the
    /// block; other markets and the next block are unaffected.
    function test_restrictionMode_afterALiquidation() public {
        _fund(bob, 100_000e18);
        uint256 other = _open(bob, ETH, false, 1_000e18, 2e18);
        uint256 btcPos = _open(bob, BTC, false, 1_000e18, 2e18);
        vm.roll(block.number + 1);
        _setPrice(ethFeed, 1830e18);
        vm.prank(keeper);
        pm.liquidatePosition(id);

        vm.expectRevert(abi.encodeWithSelector(VirtualAMM.MarketRestricted.selector, block.number));
        vm.prank(bob);
        pm.closePosition(other, 0);
        vm.expectRevert(abi.encodeWithSelector(VirtualAMM.MarketRestricted.selector, block.number));
        vm.prank(bob);
        pm.openPosition(ETH, true, 1_000e18, 2e18, 0);
        _close(bob, btcPos); // another market
        vm.prank(bob);
        pm.addMargin(other, 10e18); // no trade

        vm.roll(block.number + 1);
        _close(bob, other);
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
