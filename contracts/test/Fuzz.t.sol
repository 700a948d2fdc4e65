// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {IPositionManager} from "../src/interfaces/IPerpEx.sol";
import {SettableFeed} from "../src/oracle/SettableFeed.sol";
import {PositionManager} from "../src/core/PositionManager.sol";
import {PositionManagerBase} from "../src/core/PositionManagerBase.sol";

contract FuzzTest is Fixture {
    function setUp() public override {
        super.setUp();
        _fund(alice, 1_000_000e18);
        _fund(bob, 1_000_000e18);
        _fund(bob, 1_000_000e18);
    }

    function _market(bool eth) internal view returns (bytes32, SettableFeed) {
        return eth ? (ETH, ethFeed) : (BTC, btcFeed);
    }

    /// Opening and immediately closing never returns more than was put in, for the trader and
    /// for the vault as a whole (pool + insurance never lose).
    function testFuzz_openCloseRoundTripNeverCreatesValue(
        bool eth,
        bool isLong,
        uint256 collateral,
        uint256 leverage,
        uint256 wait
    ) public {
        (bytes32 m,) = _market(eth);
        collateral = bound(collateral, 500e18, 50_000e18);
        leverage = bound(leverage, 1e18, 20e18);
        wait = bound(wait, 0, 7 hours); // no funding update in between
        uint256 freeBefore = vault.freeCollateral(alice);
        uint256 houseBefore = vault.liquidity() + vault.insuranceFund();
        uint256 id = _open(alice, m, isLong, collateral, leverage);
        vm.warp(block.timestamp + wait);
        _close(alice, id);
        uint256 freeAfter = vault.freeCollateral(alice);
        assertLt(freeAfter, freeBefore, "trader strictly loses the fees and the spread");
        assertGe(vault.liquidity() + vault.insuranceFund(), houseBefore, "house never loses on a round trip");
        assertEq(vault.totalLocked(), 0, "nothing locked");
        _assertSolvent();
    }

    struct Trip {
        bytes32 m;
        uint256 id;
        uint256 openFee;
        uint256 collateral;
        int256 funding;
        int256 pnl;
        uint256 closeFee;
    }

    uint256 internal constant DEPOSIT = 1_000_000e18;

    /// Whatever the market does, a trader can withdraw exactly deposits + realized PnL - funding
    /// - fees (floored at losing the collateral) and never more.
    function testFuzz_withdrawNeverExceedsDepositsPlusPnl(
        bool eth,
        bool isLong,
        uint256 collateral,
        uint256 leverage,
        bool otherLong,
        uint256 otherNotional,
        bool withFunding
    ) public {
        Trip memory t;
        SettableFeed feed;
        (t.m, feed) = _market(eth);
        t.collateral = bound(collateral, 500e18, 20_000e18);
        leverage = bound(leverage, 1e18, 20e18);
        otherNotional = bound(otherNotional, 5_000e18, 2_000_000e18);

        (,, t.openFee,) = pm.quoteOpen(t.m, isLong, t.collateral, leverage);
        t.id = _open(alice, t.m, isLong, t.collateral, leverage);

        // another trader moves the vAMM (in the next block); the index follows
        vm.roll(block.number + 1);
        vm.prank(bob);
        pm.openPosition(t.m, otherLong, otherNotional / 10, 10e18, 0);
        _setPrice(feed, pm.markPrice(t.m));
        if (withFunding) {
            vm.warp(block.timestamp + 8 hours);
            pm.updateFundingRate(t.m);
            vm.warp(block.timestamp + 4 hours); // funding accrues at the rate just set
        }
        vm.roll(block.number + 1);
        t.funding = pm.pendingFunding(t.id);
        (,, t.closeFee, t.pnl) = pm.quoteClose(t.id);
        int256 equity = int256(t.collateral) + t.pnl - t.funding;
        if (equity < 0) {
            // only a liquidation may realize a loss beyond the margin
            vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.NegativeEquity.selector, t.id, equity));
            _close(alice, t.id);
            return;
        }
        _close(alice, t.id);
        _checkWithdraw(t, uint256(equity));
    }

    function _checkWithdraw(Trip memory t, uint256 equity) internal {
        uint256 payout = equity > t.closeFee ? equity - t.closeFee : 0;
        uint256 free = vault.freeCollateral(alice);
        assertEq(free, DEPOSIT - t.collateral - t.openFee + payout, "ledger");

        vm.expectRevert();
        vm.prank(alice);
        vault.withdraw(free + 1);
        vm.prank(alice);
        vault.withdraw(free);
        uint256 withdrawn = token.balanceOf(alice);
        assertEq(withdrawn, free, "withdrew everything");
        int256 gain = t.pnl - t.funding;
        assertLe(int256(withdrawn), int256(DEPOSIT) + gain, "never more than deposits + PnL");
        _assertSolvent();
    }

    /// The keeper's rule: liquidatable exactly when margin (index-price PnL, pending funding)
    /// is below the maintenance margin; liquidatePosition succeeds exactly then.
    function testFuzz_liquidatableIffBelowMaintenance(
        bool eth,
        bool isLong,
        uint256 collateral,
        uint256 leverage,
        uint256 priceBps,
        bool withFunding
    ) public {
        (bytes32 m, SettableFeed feed) = _market(eth);
        collateral = bound(collateral, 500e18, 20_000e18);
        leverage = bound(leverage, 1e18, 20e18);
        priceBps = bound(priceBps, 7_000, 13_000); // oracle moves -30% .. +30%
        uint256 id = _open(alice, m, isLong, collateral, leverage);
        uint256 start = pm.indexPrice(m);
        if (withFunding) {
            // push the mark so funding is non-zero, run one interval, then accrue at that rate
            vm.roll(block.number + 1);
            vm.prank(bob);
            pm.openPosition(m, !isLong, 200_000e18, 10e18, 0);
            vm.warp(block.timestamp + 8 hours);
            pm.updateFundingRate(m);
            vm.warp(block.timestamp + 4 hours);
        }
        vm.roll(block.number + 1);
        uint256 index = start * priceBps / 10_000;
        _setPrice(feed, index);
        index = pm.indexPrice(m); // feed precision (8 decimals)
        (int256 margin, uint256 mm) = _expectedHealth(id, index);
        bool expected = margin < int256(mm);
        assertEq(pm.isPositionLiquidatable(id), expected, "view agrees with the formula");
        uint256[] memory ids = new uint256[](1);
        ids[0] = id;
        IPositionManager.PositionHealth memory h = pm.getPositionsHealth(ids)[0];
        assertEq(h.margin, margin, "margin");
        assertEq(h.maintenanceMargin, mm, "maintenance");
        assertEq(h.liquidatable, expected, "batch agrees");

        if (!expected) vm.expectRevert();
        vm.prank(keeper);
        pm.liquidatePosition(id);
        if (expected) {
            assertEq(_pos(id).size, 0, "liquidated");
            _assertSolvent();
        }
    }
}
