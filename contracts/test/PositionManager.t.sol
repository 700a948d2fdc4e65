// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {IPositionManager} from "../src/interfaces/IPerpEx.sol";
import {PositionManager} from "../src/core/PositionManager.sol";
import {PositionManagerBase} from "../src/core/PositionManagerBase.sol";
import {VirtualAMM} from "../src/core/VirtualAMM.sol";
import {Vault} from "../src/core/Vault.sol";
import {SettableFeed} from "../src/oracle/SettableFeed.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract PositionManagerOpenTest is Fixture {
    function setUp() public override {
        super.setUp();
        _fund(alice, 100_000e18);
        _fund(bob, 100_000e18);
    }

    function test_openLong_storesPositionLocksCollateralAndEmits() public {
        (uint256 size, uint256 entry, uint256 fee,) = pm.quoteOpen(ETH, true, 1_000e18, 5e18);
        uint256 insuranceBefore = vault.insuranceFund();
        vm.expectEmit(true, true, true, true, address(nft));
        emit PositionMinted(1, alice, ETH);
        vm.expectEmit(true, true, true, true, address(pm));
        emit PositionOpened(1, alice, ETH, true, 1_000e18, 5e18, size, 5_000e18, entry, fee, 0);
        uint256 id = _open(alice, ETH, true, 1_000e18, 5e18);
        assertEq(id, 1, "token id");

        IPositionManager.Position memory p = _pos(id);
        assertEq(p.marketId, ETH, "market");
        assertTrue(p.isLong, "long");
        assertEq(p.collateral, 1_000e18, "collateral");
        assertEq(p.leverage, 5e18, "leverage");
        assertEq(p.size, size, "size");
        assertEq(p.notional, 5_000e18, "notional");
        assertEq(p.entryPrice, entry, "entry");
        assertEq(p.entryFundingIndex, int256(0), "entry funding");
        assertEq(p.openedAt, block.timestamp, "openedAt");
        assertEq(p.openedBlock, block.number, "openedBlock");
        assertGt(entry, 2000e18, "a long pays above the mark");
        assertEq(fee, 5e18, "fee 0.1%");

        assertEq(nft.ownerOf(id), alice, "nft owner");
        assertEq(pm.positionOwner(id), alice, "positionOwner");
        assertEq(vault.freeCollateral(alice), 100_000e18 - 1_000e18 - fee, "free");
        assertEq(vault.totalLocked(), 1_000e18, "locked");
        assertEq(vault.insuranceFund(), insuranceBefore + fee, "fee to insurance");
        assertEq(vault.openInterest(), 5_000e18, "open interest");
        assertGt(pm.markPrice(ETH), 2000e18, "mark moved up");
        _assertSolvent();
    }

    function test_openShort() public {
        (uint256 size, uint256 entry,,) = pm.quoteOpen(BTC, false, 2_000e18, 3e18);
        uint256 id = _open(bob, BTC, false, 2_000e18, 3e18);
        IPositionManager.Position memory p = _pos(id);
        assertFalse(p.isLong, "short");
        assertEq(p.size, size, "size");
        assertEq(p.entryPrice, entry, "entry");
        assertLt(entry, 60_000e18, "a short sells below the mark");
        assertLt(pm.markPrice(BTC), 60_000e18, "mark moved down");
    }

    function test_openIncrementsTokenIds() public {
        assertEq(_open(alice, ETH, true, 250e18, 2e18), 1, "first");
        assertEq(_open(bob, BTC, false, 250e18, 2e18), 2, "second");
        assertEq(_open(alice, ETH, false, 250e18, 2e18), 3, "third");
        assertEq(nft.balanceOf(alice), 2, "balance");
        assertEq(nft.totalMinted(), 3, "minted");
    }

    function test_open_revertsUnknownMarket() public {
        bytes32 bad = keccak256("DOGE/USDT");
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.UnknownMarket.selector, bad));
        vm.prank(alice);
        pm.openPosition(bad, true, 250e18, 2e18, 0);
    }

    function test_open_revertsWhenPaused() public {
        pm.setMarketPaused(ETH, true);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.MarketIsPaused.selector, ETH));
        vm.prank(alice);
        pm.openPosition(ETH, true, 250e18, 2e18, 0);
        pm.setMarketPaused(ETH, false);
        _open(alice, ETH, true, 250e18, 2e18);
    }

    function test_open_revertsZeroCollateral() public {
        vm.expectRevert(PositionManagerBase.ZeroAmount.selector);
        vm.prank(alice);
        pm.openPosition(ETH, true, 0, 2e18, 0);
    }

    function test_open_revertsLeverageAboveMax() public {
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.InvalidLeverage.selector, 21e18, 20e18));
        vm.prank(alice);
        pm.openPosition(ETH, true, 100e18, 21e18, 0);
    }

    function test_open_revertsLeverageBelowOne() public {
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.InvalidLeverage.selector, 0.5e18, 20e18));
        vm.prank(alice);
        pm.openPosition(ETH, true, 100e18, 0.5e18, 0);
    }

    function test_open_revertsSlippageLong() public {
        (, uint256 entry,,) = pm.quoteOpen(ETH, true, 1_000e18, 10e18);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.SlippageExceeded.selector, entry, entry - 1));
        vm.prank(alice);
        pm.openPosition(ETH, true, 1_000e18, 10e18, entry - 1);
        vm.prank(alice);
        pm.openPosition(ETH, true, 1_000e18, 10e18, entry); // exactly at the bound is fine
    }

    function test_open_revertsSlippageShort() public {
        (, uint256 entry,,) = pm.quoteOpen(ETH, false, 1_000e18, 10e18);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.SlippageExceeded.selector, entry, entry + 1));
        vm.prank(alice);
        pm.openPosition(ETH, false, 1_000e18, 10e18, entry + 1);
    }

    function test_open_revertsInsufficientFreeCollateral() public {
        vm.expectPartialRevert(Vault.InsufficientFreeCollateral.selector);
        vm.prank(carol);
        pm.openPosition(ETH, true, 250e18, 2e18, 0);
    }

    function test_open_revertsUtilizationExceeded() public {
        vault.setMaxUtilization(0.00001e18); // 1,000 vUSDT of OI on 100M liquidity
        vm.expectPartialRevert(Vault.UtilizationExceeded.selector);
        vm.prank(alice);
        pm.openPosition(ETH, true, 1_000e18, 2e18, 0);
    }

    function test_open_revertsPriceImpact() public {
        ethAmm.setBlockPriceMoveLimit(0.2e18);
        _fund(carol, 1_000_000e18);
        // 10M notional on a 200M quote reserve moves the mark about 10%
        vm.expectPartialRevert(VirtualAMM.PriceImpactTooHigh.selector);
        vm.prank(carol);
        pm.openPosition(ETH, true, 1_000_000e18, 10e18, 0);
    }

    function test_open_revertsWhenImmediatelyLiquidatable() public {
        // index 10% above the mark: a 20x short is under water at once
        _setPrice(ethFeed, 2200e18);
        vm.expectPartialRevert(PositionManagerBase.WouldBeLiquidatable.selector);
        vm.prank(alice);
        pm.openPosition(ETH, false, 100e18, 20e18, 0);
    }

    function test_open_revertsBelowMinNotional() public {
        uint256 min = pm.getMarket(ETH).minNotional;
        // a 10 vUSDT 20x position would pay its keeper 2 vUSDT: less than a liquidation's gas
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.PositionTooSmall.selector, 200e18, min));
        vm.prank(alice);
        pm.openPosition(ETH, true, 10e18, 20e18, 0);
        vm.prank(alice);
        pm.openPosition(ETH, true, min / 2, 2e18, 0);
    }

    function test_open_deadlineAndMaxFee() public {
        (,, uint256 fee,) = pm.quoteOpen(ETH, true, 1_000e18, 5e18);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.DeadlineExpired.selector, block.timestamp - 1));
        vm.prank(alice);
        pm.openPosition(ETH, true, 1_000e18, 5e18, 0, fee, block.timestamp - 1);
        ethAmm.setParams(0.1e18, cfg.maxPriceImpact); // the owner raises the fee just before
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.FeeTooHigh.selector, 500e18, fee));
        vm.prank(alice);
        pm.openPosition(ETH, true, 1_000e18, 5e18, 0, fee, block.timestamp);
        ethAmm.setParams(cfg.feeRatio, cfg.maxPriceImpact);
        vm.prank(alice);
        uint256 id = pm.openPosition(ETH, true, 1_000e18, 5e18, 0, fee, block.timestamp);
        assertGt(_pos(id).size, 0, "opened within its bounds");
    }

    function test_open_revertsOnStaleOracle() public {
        vm.warp(block.timestamp + cfg.maxStaleness + 1);
        vm.expectPartialRevert(bytes4(keccak256("StalePrice(bytes32,uint256,uint256)")));
        vm.prank(alice);
        pm.openPosition(ETH, true, 250e18, 2e18, 0);
    }
}

contract PositionManagerCloseTest is Fixture {
    function setUp() public override {
        super.setUp();
        _fund(alice, 100_000e18);
        _fund(bob, 1_000_000e18);
    }

    function test_close_longWithProfit() public {
        uint256 id = _open(alice, ETH, true, 1_000e18, 10e18);
        IPositionManager.Position memory p = _pos(id);
        _open(bob, ETH, true, 100_000e18, 10e18); // pushes the mark up
        vm.roll(block.number + 1);
        (uint256 exitQuote, uint256 exitPrice, uint256 fee, int256 pnl) = pm.quoteClose(id);
        assertGt(pnl, int256(0), "profit");
        assertEq(int256(exitQuote) - int256(p.notional), pnl, "pnl = exit - entry notional");
        uint256 payout = uint256(int256(p.collateral) + pnl) - fee;
        uint256 freeBefore = vault.freeCollateral(alice);

        vm.expectEmit(true, true, true, true, address(nft));
        emit PositionBurned(id, alice, ETH);
        vm.expectEmit(true, true, true, true, address(pm));
        emit PositionClosed(id, alice, ETH, exitPrice, pnl, 0, payout, fee);
        _close(alice, id);

        assertEq(vault.freeCollateral(alice), freeBefore + payout, "payout credited");
        assertEq(_pos(id).size, 0, "deleted");
        assertFalse(nft.exists(id), "burned");
        assertEq(pm.positionOwner(id), address(0), "no owner");
        _assertSolvent();
    }

    function test_close_shortWithLoss() public {
        uint256 id = _open(alice, ETH, false, 1_000e18, 10e18);
        _open(bob, ETH, true, 100_000e18, 10e18); // mark up: the short loses
        (,, uint256 fee, int256 pnl) = pm.quoteClose(id);
        assertLt(pnl, int256(0), "loss");
        uint256 liqBefore = vault.liquidity();
        uint256 freeBefore = vault.freeCollateral(alice);
        _close(alice, id);
        uint256 payout = uint256(int256(1_000e18) + pnl) - fee;
        assertEq(vault.freeCollateral(alice), freeBefore + payout, "payout");
        assertEq(vault.liquidity(), liqBefore + uint256(-pnl), "loss to the pool");
        _assertSolvent();
    }

    /// No self-made bad debt: a position whose loss exceeds its collateral cannot be closed (only
    /// a liquidation may realize that, and liquidation is measured at the index).
    function test_close_lossBeyondCollateral_reverts() public {
        _fund(bob, 1_000_000e18);
        uint256 id = _open(alice, ETH, false, 100e18, 20e18);
        // the mark moves far up through other traders (the index follows, so they can open):
        // the short loses more than its collateral
        for (uint256 i; i < 6; ++i) {
            vm.roll(block.number + 1);
            _setPrice(ethFeed, pm.markPrice(ETH));
            _open(bob, ETH, true, 200_000e18, 10e18);
        }
        vm.roll(block.number + 1);
        (,,, int256 pnl) = pm.quoteClose(id);
        assertLt(pnl, -100e18, "loss beyond collateral");
        int256 equity = int256(100e18) + pnl;
        uint256 insBefore = vault.insuranceFund();
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.NegativeEquity.selector, id, equity));
        _close(alice, id);
        assertEq(vault.insuranceFund(), insBefore, "insurance untouched");
        assertTrue(pm.isPositionLiquidatable(id), "a keeper may liquidate it (index followed the mark)");
        _assertSolvent();
    }

    function test_close_deadlineAndMaxFee() public {
        uint256 id = _open(alice, ETH, true, 1_000e18, 5e18);
        (,, uint256 fee,) = pm.quoteClose(id);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.DeadlineExpired.selector, block.timestamp - 1));
        vm.prank(alice);
        pm.closePosition(id, 0, type(uint256).max, block.timestamp - 1);
        // the owner raises the fee to 10% just before the trade: the bound refuses it
        ethAmm.setParams(0.1e18, cfg.maxPriceImpact);
        (,, uint256 newFee,) = pm.quoteClose(id);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.FeeTooHigh.selector, newFee, fee));
        vm.prank(alice);
        pm.closePosition(id, 0, fee, block.timestamp);
        ethAmm.setParams(cfg.feeRatio, cfg.maxPriceImpact);
        vm.prank(alice);
        pm.closePosition(id, 0, fee, block.timestamp);
        assertEq(_pos(id).size, 0, "closed");
    }

    function test_close_revertsNotOwner() public {
        uint256 id = _open(alice, ETH, true, 250e18, 2e18);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.NotPositionOwner.selector, id, bob));
        vm.prank(bob);
        pm.closePosition(id, 0);
    }

    function test_close_revertsNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.PositionNotFound.selector, 42));
        vm.prank(alice);
        pm.closePosition(42, 0);
        uint256 id = _open(alice, ETH, true, 250e18, 2e18);
        _close(alice, id);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.PositionNotFound.selector, id));
        vm.prank(alice);
        pm.closePosition(id, 0);
    }

    function test_close_revertsSlippage() public {
        uint256 id = _open(alice, ETH, true, 1_000e18, 5e18);
        (, uint256 exitPrice,,) = pm.quoteClose(id);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.SlippageExceeded.selector, exitPrice, exitPrice + 1));
        vm.prank(alice);
        pm.closePosition(id, exitPrice + 1); // closing a long sells: exit must be >= limit
        uint256 sid = _open(alice, ETH, false, 1_000e18, 5e18);
        vm.roll(block.number + 1);
        (, uint256 exitShort,,) = pm.quoteClose(sid);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.SlippageExceeded.selector, exitShort, exitShort - 1));
        vm.prank(alice);
        pm.closePosition(sid, exitShort - 1); // closing a short buys: exit must be <= limit
        vm.prank(alice);
        pm.closePosition(sid, exitShort);
    }

    function test_close_worksWhenPaused() public {
        uint256 id = _open(alice, ETH, true, 250e18, 2e18);
        pm.setMarketPaused(ETH, true);
        _close(alice, id);
    }

    /// A position can leave in parts: reducePosition closes `size` of it, pays out that part's
    /// share of the collateral plus its PnL less the fee, and keeps the rest open.
    function test_reducePosition_closesPartAndKeepsTheRest() public {
        uint256 id = _open(alice, ETH, true, 10_000e18, 5e18);
        vm.roll(block.number + 1);
        IPositionManager.Position memory p = _pos(id);
        uint256 half = p.size / 2;
        (uint256 exitQuote,, uint256 fee,) = ethAmm.quoteClose(true, half);
        uint256 part = p.notional * half / p.size;
        int256 pnl = int256(exitQuote) - int256(part);
        uint256 payout = uint256(int256(p.collateral * half / p.size) + pnl) - fee;
        uint256 freeBefore = vault.freeCollateral(alice);
        vm.expectEmit(true, true, true, true, address(pm));
        emit PositionDecreased(id, alice, ETH, half, exitQuote * 1e18 / half, pnl, 0, payout, fee);
        vm.prank(alice);
        pm.reducePosition(id, half, 0, fee, block.timestamp);
        IPositionManager.Position memory q = _pos(id);
        assertEq(q.size, p.size - half, "size");
        assertEq(q.notional, p.notional - part, "notional");
        assertEq(q.collateral, p.collateral - p.collateral * half / p.size, "collateral");
        assertEq(vault.freeCollateral(alice), freeBefore + payout, "paid out");
        assertEq(vault.openInterest(), q.notional, "open interest");
        assertTrue(nft.exists(id), "still open");
        _assertSolvent();
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.InvalidSize.selector, q.size, q.size));
        vm.prank(alice);
        pm.reducePosition(id, q.size, 0, type(uint256).max, block.timestamp);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.NotPositionOwner.selector, id, bob));
        vm.prank(bob);
        pm.reducePosition(id, 1, 0, type(uint256).max, block.timestamp);
        vm.expectPartialRevert(PositionManagerBase.PositionTooSmall.selector);
        vm.prank(alice);
        pm.reducePosition(id, q.size - 1e15, 0, type(uint256).max, block.timestamp);
    }

    /// The review's stuck whale: after the market moved, closing the whole position would pass the
    /// block's price budget in every block; closing it in parts works.
    function test_reducePosition_letsALargePositionLeaveInParts() public {
        for (uint256 i; i < 3; ++i) {
            _fund(alice, 1_000_000e18);
        }
        uint256 a = _open(alice, ETH, true, 600_000e18, 4e18); // 2.4M: ~2.4%
        _fund(bob, 1_000_000e18);
        for (uint256 i; i < 12; ++i) {
            vm.roll(block.number + 1);
            _setPrice(ethFeed, pm.markPrice(ETH)); // the market moves up, the index with it
            _open(bob, ETH, true, 150_000e18, 10e18);
        }
        vm.roll(block.number + 1);
        vm.expectPartialRevert(VirtualAMM.BlockPriceMoveTooHigh.selector);
        _close(alice, a);
        uint256 left = _pos(a).size;
        uint256 n;
        while (_pos(a).size > left / 2) {
            vm.prank(alice);
            pm.reducePosition(a, left / 4, 0, type(uint256).max, block.timestamp);
            vm.roll(block.number + 1);
            ++n;
        }
        _close(alice, a);
        assertEq(_pos(a).size, 0, "closed");
        assertGt(n, 0, "in parts");
        _assertSolvent();
    }

    function test_quoteClose_revertsNotFound() public {
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.PositionNotFound.selector, 7));
        pm.quoteClose(7);
    }
}

contract PositionManagerMarginTest is Fixture {
    uint256 internal id;

    function setUp() public override {
        super.setUp();
        _fund(alice, 100_000e18);
        id = _open(alice, ETH, true, 1_000e18, 10e18);
    }

    function test_addMargin() public {
        uint256 freeBefore = vault.freeCollateral(alice);
        vm.expectEmit(true, true, true, true, address(pm));
        emit MarginChanged(id, alice, ETH, int256(500e18), 1_500e18, 0);
        vm.prank(alice);
        pm.addMargin(id, 500e18);
        assertEq(_pos(id).collateral, 1_500e18, "collateral");
        assertEq(vault.freeCollateral(alice), freeBefore - 500e18, "free");
        assertEq(vault.totalLocked(), 1_500e18, "locked");
        _assertSolvent();
    }

    function test_addMargin_reverts() public {
        vm.expectRevert(PositionManagerBase.ZeroAmount.selector);
        vm.prank(alice);
        pm.addMargin(id, 0);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.NotPositionOwner.selector, id, bob));
        vm.prank(bob);
        pm.addMargin(id, 1e18);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.PositionNotFound.selector, 99));
        vm.prank(alice);
        pm.addMargin(99, 1e18);
        vm.expectPartialRevert(Vault.InsufficientFreeCollateral.selector);
        vm.prank(alice);
        pm.addMargin(id, 1_000_000e18);
    }

    function test_removeMargin() public {
        pm.setRiskParams(ETH, 20e18, 0.025e18, 0.01e18);
        uint256 freeBefore = vault.freeCollateral(alice);
        vm.expectEmit(true, true, true, true, address(pm));
        emit MarginChanged(id, alice, ETH, -int256(200e18), 800e18, 0);
        vm.prank(alice);
        pm.removeMargin(id, 200e18);
        assertEq(_pos(id).collateral, 800e18, "collateral");
        assertEq(vault.freeCollateral(alice), freeBefore + 200e18, "free");
        _assertSolvent();
    }

    function test_removeMargin_revertsBelowInitialMargin() public {
        // 10x position, max leverage 20x: about half the collateral must stay
        vm.expectPartialRevert(PositionManagerBase.InsufficientMargin.selector);
        vm.prank(alice);
        pm.removeMargin(id, 600e18);
    }

    function test_removeMargin_reverts() public {
        vm.expectRevert(PositionManagerBase.ZeroAmount.selector);
        vm.prank(alice);
        pm.removeMargin(id, 0);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.InsufficientCollateral.selector, 1_000e18, 1_001e18));
        vm.prank(alice);
        pm.removeMargin(id, 1_001e18);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.NotPositionOwner.selector, id, bob));
        vm.prank(bob);
        pm.removeMargin(id, 1e18);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.PositionNotFound.selector, 99));
        vm.prank(alice);
        pm.removeMargin(99, 1e18);
        pm.setMarketPaused(ETH, true);
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.MarketIsPaused.selector, ETH));
        vm.prank(alice);
        pm.removeMargin(id, 1e18);
    }

    function test_marginChange_settlesPendingFunding() public {
        _fund(bob, 100_000e18);
        _open(bob, ETH, false, 20_000e18, 1e18); // the receiving side (more shorts than longs)
        // index 2.5% below the mark for a full interval: the next rate has longs pay
        _setPrice(ethFeed, 1950e18);
        vm.warp(block.timestamp + 8 hours);
        pm.updateFundingRate(ETH);
        vm.warp(block.timestamp + 2 hours); // funding accrues at the rate just set
        int256 cum = pm.cumulativeFundingIndex(ETH);
        assertGt(cum, int256(0), "longs pay");
        assertEq(cum, pm.fundingPerSecond(ETH) * 2 hours, "shorts outnumber longs: the full speed");
        int256 owed = pm.pendingFunding(id);
        assertEq(owed, (int256(_pos(id).size) * cum + 1e18 - 1) / 1e18, "pending funding (rounded up)");
        uint256 liqBefore = vault.liquidity();

        vm.expectEmit(true, true, true, true, address(pm));
        emit MarginChanged(id, alice, ETH, int256(100e18), 1_100e18, 0);
        vm.expectEmit(true, true, true, true, address(pm));
        emit MarginChanged(id, alice, ETH, -owed, uint256(int256(1_100e18) - owed), cum);
        vm.prank(alice);
        pm.addMargin(id, 100e18);

        assertEq(_pos(id).entryFundingIndex, cum, "entry index reset");
        assertEq(pm.pendingFunding(id), int256(0), "settled");
        assertEq(vault.liquidity(), liqBefore, "the pool is no funding counterparty");
        assertEq(vault.fundingBuffer(), owed, "the payment waits for the receivers");
        assertEq(vault.totalLocked(), 20_000e18 + uint256(int256(1_100e18) - owed), "locked");
        _assertSolvent();
    }

    /// When mark and index diverge past maxSpread, removing margin must pass at the worse price.
    function test_removeMargin_usesTheWorsePriceWhenMarkAndIndexDiverge() public {
        // the index rises 10% above the mark: at the index the long looks 10% in profit, at the
        // mark it is not
        _setPrice(ethFeed, 2200e18);
        vm.expectPartialRevert(PositionManagerBase.InsufficientMargin.selector);
        vm.prank(alice);
        pm.removeMargin(id, 550e18);
        _setPrice(ethFeed, 2000e18);
        vm.prank(alice);
        pm.removeMargin(id, 400e18);
    }
}

contract PositionManagerViewsTest is Fixture {
    function test_getMarket() public view {
        IPositionManager.MarketConfig memory m = pm.getMarket(ETH);
        assertEq(m.vamm, address(ethAmm), "vamm");
        assertEq(m.oracleFeed, address(ethFeed), "feed");
        assertEq(m.maxLeverage, 20e18, "maxLeverage");
        assertEq(m.maintenanceMarginRatio, 0.025e18, "mmr");
        assertEq(m.liquidationFeeRatio, 0.02e18, "liq penalty");
        assertEq(m.fundingInterval, 8 hours, "interval");
        assertEq(m.maxFundingRate, 0.01e18, "max rate");
        assertFalse(m.paused, "paused");
        assertEq(m.minNotional, 440e18, "220k gas at 10 gwei, native token 2000, reward 1%");
        assertEq(m.liquidationRewardShare, 0.5e18, "keeper share");
        assertEq(m.maxSpread, 0.01e18, "spread");
    }

    function test_marketIdsAndPrices() public view {
        bytes32[] memory ids = pm.marketIds();
        assertEq(ids.length, 2, "two markets");
        assertEq(ids[0], keccak256("ETH/USDT"), "eth id");
        assertEq(ids[1], keccak256("BTC/USDT"), "btc id");
        assertEq(pm.marketCount(), 2, "count");
        assertTrue(pm.isMarket(ETH), "is market");
        assertFalse(pm.isMarket(bytes32(0)), "not market");
        assertEq(pm.indexPrice(ETH), 2000e18, "eth index");
        assertEq(pm.indexPrice(BTC), 60_000e18, "btc index");
        assertApproxEq(pm.markPrice(ETH), 2000e18, 1e6, "eth mark");
        assertApproxEq(pm.markPrice(BTC), 60_000e18, 1e8, "btc mark");
    }

    function test_views_revertUnknownMarket() public {
        bytes32 bad = keccak256("X");
        bytes memory err = abi.encodeWithSelector(PositionManagerBase.UnknownMarket.selector, bad);
        vm.expectRevert(err);
        pm.getMarket(bad);
        vm.expectRevert(err);
        pm.indexPrice(bad);
        vm.expectRevert(err);
        pm.markPrice(bad);
        vm.expectRevert(err);
        pm.lastFundingTime(bad);
        vm.expectRevert(err);
        pm.nextFundingTime(bad);
        vm.expectRevert(err);
        pm.fundingRate(bad);
        vm.expectRevert(err);
        pm.cumulativeFundingIndex(bad);
        vm.expectRevert(err);
        pm.quoteOpen(bad, true, 1e18, 1e18);
        vm.expectRevert(err);
        pm.previewFundingRate(bad);
    }

    function test_getPosition_unknownIsZero() public view {
        IPositionManager.Position memory p = pm.getPosition(12345);
        assertEq(p.size, 0, "size");
        assertEq(p.marketId, bytes32(0), "market");
        assertEq(pm.pendingFunding(12345), int256(0), "funding");
        assertEq(pm.unrealizedPnl(12345), int256(0), "pnl");
        assertEq(pm.positionOwner(12345), address(0), "owner");
    }

    function test_unrealizedPnl_atIndexPrice() public {
        _fund(alice, 10_000e18);
        uint256 id = _open(alice, ETH, true, 1_000e18, 5e18);
        IPositionManager.Position memory p = _pos(id);
        _setPrice(ethFeed, 2100e18);
        assertEq(pm.unrealizedPnl(id), (int256(2100e18) - int256(p.entryPrice)) * int256(p.size) / 1e18, "pnl");
    }

    function test_quoteOpenMatchesOpen() public {
        _fund(alice, 10_000e18);
        (uint256 size, uint256 entry, uint256 fee, uint256 impact) = pm.quoteOpen(BTC, false, 3_000e18, 7e18);
        assertGt(impact, 0, "impact");
        uint256 freeBefore = vault.freeCollateral(alice);
        uint256 id = _open(alice, BTC, false, 3_000e18, 7e18);
        assertEq(_pos(id).size, size, "size");
        assertEq(_pos(id).entryPrice, entry, "entry");
        assertEq(freeBefore - vault.freeCollateral(alice), 3_000e18 + fee, "fee");
    }
}

contract PositionManagerAdminTest is Fixture {
    function _newAmm(string memory pair) internal returns (VirtualAMM) {
        return new VirtualAMM(pair, address(pm), 1_000e18, 1_000_000e18, 0.001e18, 0.05e18);
    }

    function test_addMarket() public {
        string memory pair = "SOL/USDT";
        bytes32 id = keccak256(bytes(pair));
        SettableFeed feed = new SettableFeed(8, pair, 150e8);
        oracle.setFeed(id, address(feed), 1 days);
        VirtualAMM amm = new VirtualAMM(pair, address(pm), 10_000e18, 1_500_000e18, 0.001e18, 0.05e18);
        vm.expectEmit(true, true, true, true, address(pm));
        emit MarketAdded(id, pair, address(amm), address(feed));
        bytes32 got = pm.addMarket(pair, amm, 10e18, 0.05e18, 0.01e18, 1 hours, 0.005e18);
        assertEq(got, id, "id");
        assertEq(pm.marketCount(), 3, "count");
        assertEq(pm.lastFundingTime(id), block.timestamp, "funding clock starts");
        assertEq(pm.nextFundingTime(id), block.timestamp + 1 hours, "next");
        assertEq(pm.indexPrice(id), 150e18, "index");
        _fund(alice, 1_000e18);
        _open(alice, id, true, 100e18, 10e18);
    }

    function test_addMarket_reverts() public {
        VirtualAMM ethAgain = _newAmm("ETH/USDT");
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.MarketExists.selector, ETH));
        pm.addMarket("ETH/USDT", ethAgain, 10e18, 0.05e18, 0.01e18, 1 hours, 0.005e18);

        VirtualAMM sol = _newAmm("SOL/USDT");
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector); // no feed yet
        pm.addMarket("SOL/USDT", sol, 10e18, 0.05e18, 0.01e18, 1 hours, 0.005e18);

        oracle.setFeed(keccak256("SOL/USDT"), address(new SettableFeed(8, "SOL", 150e8)), 1 days);
        VirtualAMM xrp = _newAmm("XRP/USDT");
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector); // vamm for another pair
        pm.addMarket("SOL/USDT", xrp, 10e18, 0.05e18, 0.01e18, 1 hours, 0.005e18);
        VirtualAMM foreign = new VirtualAMM("SOL/USDT", address(0xdead), 1_000e18, 1_000_000e18, 0, 0.05e18);
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector); // vamm for another manager
        pm.addMarket("SOL/USDT", foreign, 10e18, 0.05e18, 0.01e18, 1 hours, 0.005e18);
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector); // mmr >= 1 / maxLeverage
        pm.addMarket("SOL/USDT", sol, 20e18, 0.05e18, 0.01e18, 1 hours, 0.005e18);
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector); // liquidation fee > mmr
        pm.addMarket("SOL/USDT", sol, 10e18, 0.05e18, 0.06e18, 1 hours, 0.005e18);
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector); // leverage < 1
        pm.addMarket("SOL/USDT", sol, 0.5e18, 0.05e18, 0.01e18, 1 hours, 0.005e18);
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector); // interval too short
        pm.addMarket("SOL/USDT", sol, 10e18, 0.05e18, 0.01e18, 59, 0.005e18);
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector); // zero max rate
        pm.addMarket("SOL/USDT", sol, 10e18, 0.05e18, 0.01e18, 1 hours, 0);

        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        vm.prank(alice);
        pm.addMarket("SOL/USDT", sol, 10e18, 0.05e18, 0.01e18, 1 hours, 0.005e18);
    }

    function test_setRiskParams() public {
        pm.setRiskParams(ETH, 10e18, 0.05e18, 0.02e18);
        IPositionManager.MarketConfig memory m = pm.getMarket(ETH);
        assertEq(m.maxLeverage, 10e18, "lev");
        assertEq(m.maintenanceMarginRatio, 0.05e18, "mmr");
        assertEq(m.liquidationFeeRatio, 0.02e18, "fee");
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector);
        pm.setRiskParams(ETH, 10e18, 0.1e18, 0.02e18);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        vm.prank(alice);
        pm.setRiskParams(ETH, 10e18, 0.05e18, 0.02e18);
    }

    function test_setFundingParams() public {
        pm.setFundingParams(BTC, 1 hours, 0.002e18);
        assertEq(pm.getMarket(BTC).fundingInterval, 1 hours, "interval");
        assertEq(pm.getMarket(BTC).maxFundingRate, 0.002e18, "rate");
        assertEq(pm.nextFundingTime(BTC), pm.lastFundingTime(BTC) + 1 hours, "next");
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector);
        pm.setFundingParams(BTC, 31 days, 0.002e18);
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector);
        pm.setFundingParams(BTC, 1 hours, 2e18);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        vm.prank(alice);
        pm.setFundingParams(BTC, 1 hours, 0.002e18);
    }

    function test_deployProfiles() public pure {
        Config memory dev = _defaultConfig();
        Config memory prod = _productionConfig();
        assertEq(uint256(prod.maxStaleness), 3 hours, "production: hours, not a year");
        assertEq(uint256(dev.maxStaleness), 365 days, "dev: local chains move the clock by hours");
        assertEq(_minNotional(prod), 1_980e18, "220k gas x 30 gwei x 3000 / 1% reward");
        assertEq(_minNotional(dev), 440e18, "220k gas x 10 gwei x 2000 / 1% reward");
        assertEq(prod.maxPriceMovePerBlock, 0.025e18, "per-block move");
    }

    /// On a market with open positions, parameter changes wait paramChangeDelay: the first call
    /// schedules, the same call repeated in its window applies. The owner cannot tighten the rules
    /// under a position and liquidate it in one go (the review's confiscation).
    function test_paramChangesOnALiveMarketAreDelayed() public {
        _fund(alice, 200_000e18);
        uint256 id = _open(alice, ETH, true, 100_000e18, 5e18);
        vm.roll(block.number + 1);
        pm.setRiskParams(ETH, 5e18, 0.1999e18, 0.1999e18); // scheduled, not applied
        assertEq(pm.getMarket(ETH).maintenanceMarginRatio, 0.025e18, "unchanged");
        assertFalse(pm.isPositionLiquidatable(id), "still healthy");
        vm.expectPartialRevert(PositionManagerBase.NotLiquidatable.selector);
        pm.liquidatePosition(id);
        uint256 due = block.timestamp + pm.paramChangeDelay();
        vm.warp(due - 1);
        bytes32 changeId = keccak256(
            abi.encode(PositionManager.setRiskParams.selector, ETH, 5e18, 0.1999e18, 0.1999e18)
        );
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.ParamChangeNotReady.selector, changeId, due));
        pm.setRiskParams(ETH, 5e18, 0.1999e18, 0.1999e18);
        vm.warp(due);
        _setPrice(ethFeed, 2000e18);
        pm.setRiskParams(ETH, 5e18, 0.1999e18, 0.1999e18);
        assertEq(pm.getMarket(ETH).maintenanceMarginRatio, 0.1999e18, "applied after the delay");
        // pausing is immediate: it only lets traders reduce risk
        pm.setMarketPaused(ETH, true);
        assertTrue(pm.getMarket(ETH).paused, "paused");
    }

    function test_setSafetyParams() public {
        vm.expectEmit(true, true, true, true, address(pm));
        emit PositionManagerBase.SafetyParamsUpdated(ETH, 500e18, 0.3e18, 0.02e18);
        pm.setSafetyParams(ETH, 500e18, 0.3e18, 0.02e18);
        IPositionManager.MarketConfig memory m = pm.getMarket(ETH);
        assertEq(m.minNotional, 500e18, "min");
        assertEq(m.liquidationRewardShare, 0.3e18, "share");
        assertEq(m.maxSpread, 0.02e18, "spread");
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector);
        pm.setSafetyParams(ETH, 1e18, 1.1e18, 0.02e18);
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector);
        pm.setSafetyParams(ETH, 1e18, 0.5e18, 0);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        vm.prank(alice);
        pm.setSafetyParams(ETH, 1e18, 0.5e18, 0.02e18);
    }

    function test_setMarketPaused() public {
        vm.expectEmit(true, true, true, true, address(pm));
        emit MarketPaused(ETH, true);
        pm.setMarketPaused(ETH, true);
        assertTrue(pm.getMarket(ETH).paused, "paused");
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        vm.prank(alice);
        pm.setMarketPaused(ETH, false);
    }

    function test_twoStepOwnership() public {
        pm.transferOwnership(alice);
        assertEq(pm.owner(), address(this), "still owner until accepted");
        assertEq(pm.pendingOwner(), alice, "pending");
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, bob));
        vm.prank(bob);
        pm.acceptOwnership();
        vm.prank(alice);
        pm.acceptOwnership();
        assertEq(pm.owner(), alice, "new owner");
    }

    function test_constructor_revertsZeroAddress() public {
        vm.expectRevert(PositionManagerBase.ZeroAddress.selector);
        new PositionManager(Vault(address(0)), oracle, nft);
    }
}
