// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {IPositionManager} from "../src/interfaces/IPerpEx.sol";
import {PositionManager} from "../src/core/PositionManager.sol";
import {PositionManagerBase} from "../src/core/PositionManagerBase.sol";
import {VirtualAMM} from "../src/core/VirtualAMM.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// The attacks of the economic review (issue 13), replayed on the default deployment. Each one
/// measures profit, not bookkeeping: the attacker's money against its starting capital, and the
/// pool's and the insurance fund's against theirs.
contract AttackTest is Fixture {
    address internal attacker = address(0xA77AC4);
    uint256 internal capital;
    uint256 internal insurance0;
    uint256 internal liquidity0;

    function setUp() public override {
        super.setUp();
        _fund(alice, 1_000_000e18);
        _fund(bob, 1_000_000e18);
        vm.roll(block.number + 1);
    }

    function _arm(uint256 millions) internal {
        for (uint256 i; i < millions; ++i) {
            _fund(attacker, 1_000_000e18); // capital a flash loan would lend
        }
        capital = vault.freeCollateral(attacker);
        insurance0 = vault.insuranceFund();
        liquidity0 = vault.liquidity();
    }

    function _tryOpen(bytes32 m, bool isLong, uint256 collateral, uint256 leverage) internal returns (uint256 id) {
        vm.prank(attacker);
        try pm.openPosition(m, isLong, collateral, leverage, 0) returns (uint256 t) {
            return t;
        } catch {
            return 0;
        }
    }

    function _tryClose(uint256 id) internal returns (bool) {
        if (id == 0 || _pos(id).size == 0) return true;
        vm.prank(attacker);
        try pm.closePosition(id, 0) {
            return true;
        } catch {
            return false;
        }
    }

    /// Close every id that still exists, retrying in any order until nothing more closes.
    function _unwindAll(uint256[] memory ids) internal {
        bool progress = true;
        while (progress) {
            progress = false;
            for (uint256 i; i < ids.length; ++i) {
                if (ids[i] != 0 && _pos(ids[i]).size != 0 && _tryClose(ids[i])) progress = true;
            }
        }
    }

    function _assertNoProfit(string memory what) internal view {
        assertLe(vault.freeCollateral(attacker), capital, string.concat(what, ": attacker richer"));
        assertGe(vault.insuranceFund(), insurance0, string.concat(what, ": insurance paid"));
        assertGe(vault.liquidity(), liquidity0, string.concat(what, ": pool paid"));
        assertEq(vault.badDebt(), 0, string.concat(what, ": bad debt"));
        _assertSolvent();
    }

    // ---------------------------------------------------------------- 1. atomic vAMM manipulation

    /// In one block: a 20x long, then 1x shorts until the vAMM is far lower, close the long at
    /// negative equity, close the shorts. (The review used a 4M long and 3M shorts; a trade that
    /// large no longer fits in one block, so the long is 2M and the shorts 1M.) The per-block move
    /// limit stops the shorts early, a negative-equity close reverts, and whatever order the
    /// attacker tries, everything it can unwind in the block returns at most its capital.
    function test_attack1_atomicVammManipulation_noProfit() public {
        _arm(16);
        uint256[] memory ids = new uint256[](12);
        vm.prank(attacker);
        vm.expectPartialRevert(VirtualAMM.BlockPriceMoveTooHigh.selector);
        pm.openPosition(ETH, true, 200_000e18, 20e18, 0); // the review's 4M long
        ids[0] = _tryOpen(ETH, true, 100_000e18, 20e18);
        assertGt(ids[0], 0, "the long opens");
        uint256 opened;
        for (uint256 i = 1; i < 12; ++i) {
            ids[i] = _tryOpen(ETH, false, 1_000_000e18, 1e18);
            if (ids[i] != 0) ++opened;
        }
        assertLt(opened, 5, "the per-block limit stops the shorts");
        assertLe(
            (pm.markPrice(ETH) > 2000e18 ? pm.markPrice(ETH) - 2000e18 : 2000e18 - pm.markPrice(ETH)) * 1e18 / 2000e18,
            0.025e18,
            "the mark moved at most 2.5% in the block"
        );
        // the long first, as in the attack
        (,,, int256 pnl) = pm.quoteClose(ids[0]);
        if (int256(_pos(ids[0]).collateral) + pnl < 0) assertFalse(_tryClose(ids[0]), "no bad-debt close");
        _unwindAll(ids);
        for (uint256 i; i < 6; ++i) {
            assertTrue(ids[i] == 0 || _pos(ids[i]).size == 0, "everything unwound in the block");
        }
        _assertNoProfit("attack 1");
    }

    /// The same, spread over many blocks with the oracle still: each block's move is limited, the
    /// long can never close below zero equity, and it is never liquidatable (the index stands).
    function test_attack1_overManyBlocks_noProfit() public {
        _arm(30);
        uint256[] memory ids = new uint256[](12);
        ids[0] = _tryOpen(ETH, true, 100_000e18, 20e18);
        for (uint256 i = 1; i < 12; ++i) {
            vm.roll(block.number + 1);
            ids[i] = _tryOpen(ETH, false, 2_000_000e18, 1e18);
        }
        assertLt(pm.markPrice(ETH), 1700e18, "the mark was pushed far down");
        vm.roll(block.number + 1);
        assertFalse(pm.isPositionLiquidatable(ids[0]), "the index did not move: not liquidatable");
        vm.expectPartialRevert(PositionManagerBase.NegativeEquity.selector);
        vm.prank(attacker);
        pm.closePosition(ids[0], 0);
        vm.prank(keeper);
        vm.expectPartialRevert(PositionManagerBase.NotLiquidatable.selector);
        pm.liquidatePosition(ids[0]);
        // unwinding the shorts brings the mark back; then the long closes at about what it paid
        for (uint256 round; round < 20; ++round) {
            vm.roll(block.number + 1);
            _unwindAll(ids);
        }
        for (uint256 i; i < 12; ++i) {
            assertTrue(ids[i] == 0 || _pos(ids[i]).size == 0, "everything unwound");
        }
        _assertNoProfit("attack 1, many blocks");
    }

    // ---------------------------------------------------------------- 2. liquidation sandwich

    function _victim() internal returns (uint256 id) {
        id = _open(alice, ETH, true, 100_000e18, 10e18); // 1M notional at ~2000
        vm.roll(block.number + 1);
        _setPrice(ethFeed, 1820e18); // the index falls 9%: liquidatable
        assertTrue(pm.isPositionLiquidatable(id), "victim liquidatable");
    }

    /// A keeper shorts, liquidates and closes in one block: after the liquidation the market is
    /// restricted for the rest of the block, so the close reverts and the sandwich cannot be
    /// completed; the keeper is left with its reward and an open short at market risk.
    function test_attack2_keeperSandwich_closeInTheSameBlockReverts() public {
        uint256 v = _victim();
        _arm(3);
        uint256 s = _tryOpen(ETH, false, 2_000_000e18, 1e18);
        assertGt(s, 0, "front-run short");
        vm.prank(attacker);
        pm.liquidatePosition(v);
        vm.expectRevert(abi.encodeWithSelector(VirtualAMM.MarketRestricted.selector, block.number));
        vm.prank(attacker);
        pm.closePosition(s, 0);
        assertGe(vault.insuranceFund(), insurance0, "the insurance fund did not pay");
        assertEq(vault.badDebt(), 0, "no bad debt");
    }

    /// Without the front-run, what the keeper gets is the reward; with it, the liquidation can
    /// only use what is left of the block's price-move budget (here: part of the position).
    function test_attack2_frontRunShrinksTheLiquidation() public {
        uint256 v = _victim();
        uint256 size = _pos(v).size;
        _arm(3);
        uint256 s = _tryOpen(ETH, false, 2_000_000e18, 1e18); // ~2% of the 2.5% budget
        assertGt(s, 0, "front-run short");
        vm.prank(attacker);
        pm.liquidatePosition(v);
        assertGt(_pos(v).size, 0, "only part of the victim was unwound in this block");
        assertLt(_pos(v).size, size, "part");
        assertGe(
            pm.markPrice(ETH),
            uint256(ethAmm.blockStartMark()) * 0.975e18 / 1e18,
            "the block's mark moved at most 2.5% in all"
        );
        assertGe(vault.insuranceFund(), insurance0, "no shortfall");
    }

    /// The sandwich's back-run moved to the next block (the attacker carries the short over the
    /// block boundary at market risk): its gain is bounded by what the liquidation moved the mark
    /// inside the block budget, far below the issue's 212k, and the insurance fund pays nothing.
    function test_attack2_twoBlockSandwich_isBounded() public {
        uint256 v = _victim();
        _arm(3);
        uint256 s = _tryOpen(ETH, false, 2_000_000e18, 1e18);
        uint256 markAfterFrontRun = pm.markPrice(ETH);
        vm.prank(attacker);
        pm.liquidatePosition(v);
        uint256 reward = vault.freeCollateral(attacker) - (capital - 2_000_000e18 - 2_000e18);
        uint256 liqMove = markAfterFrontRun - pm.markPrice(ETH);
        vm.roll(block.number + 1);
        assertTrue(_tryClose(s), "closes next block");
        uint256 end = vault.freeCollateral(attacker);
        uint256 gain = end > capital + reward ? end - capital - reward : 0;
        // the short's gain beyond the reward: its size times the liquidation's own move
        uint256 bound = _pos(s).size == 0 ? 2_000_000e18 * liqMove / markAfterFrontRun : 0;
        assertLe(gain, bound, "bounded by size x the liquidation's move in the block");
        assertLt(gain, 15_000e18, "a fraction of the attack's 212k");
        assertGe(vault.insuranceFund(), insurance0, "the insurance fund did not pay");
        assertEq(vault.badDebt(), 0, "no bad debt");
    }

    // ---------------------------------------------------------------- 3. funding snipe and dodge

    /// Open shorts, update the funding rate, close, in one block: no time held, no funding.
    function test_attack3_fundingSnipeInOneBlock_noProfit() public {
        _setPrice(ethFeed, 1900e18); // mark above index for the whole period: shorts would receive
        vm.warp(block.timestamp + 8 hours);
        _setPrice(ethFeed, 1900e18);
        vm.roll(block.number + 1);
        _arm(2);
        uint256[] memory ids = new uint256[](4);
        for (uint256 i; i < 4; ++i) {
            ids[i] = _tryOpen(ETH, false, 120_000e18, 4e18);
        }
        pm.updateFundingRate(ETH);
        assertGt(pm.fundingRate(ETH), int256(0), "the new rate has longs pay shorts");
        _unwindAll(ids);
        _assertNoProfit("attack 3");
    }

    // ---------------------------------------------------------------- 4. index TWAP

    /// A one-block spike in the feed counts for its 12 seconds, not until someone pokes the
    /// oracle again; a 7-hour TWAP stays at the feed's level and the rate is not forced to max.
    function test_attack4_spikeDoesNotForceTheMaximumRate() public {
        vm.warp(block.timestamp + 1 hours);
        _setPrice(ethFeed, 2525e18);
        vm.warp(block.timestamp + 12);
        _setPrice(ethFeed, 2000e18);
        vm.warp(T0 + 8 hours);
        (int256 rate,, uint256 indexTwap) = pm.previewFundingRate(ETH);
        assertLt(indexTwap, 2001e18, "about the feed's level");
        assertLt(rate < 0 ? -rate : rate, int256(0.0001e18), "not the maximum rate");
    }

    // ---------------------------------------------------------------- 8. the pool's owners

    /// A third party's liquidity is its own: it gets shares and takes them back; the owner
    /// cannot take it, and cannot take the insurance fund without a week's notice.
    function _wallet(uint256 amount) internal {
        vm.startPrank(attacker);
        token.faucet(amount);
        token.approve(address(vault), amount);
        vm.stopPrank();
    }

    function test_attack8_thirdPartyLiquidityIsNotTheOwners() public {
        _arm(1);
        _wallet(500_000e18);
        vm.prank(attacker);
        uint256 shares = vault.addLiquidity(500_000e18);
        assertGt(shares, 0, "shares");
        uint256 ownerShares = vault.sharesOf(address(this));
        vm.expectPartialRevert(bytes4(keccak256("InsufficientShares(uint256,uint256)")));
        vault.removeLiquidity(ownerShares + shares, address(this)); // the owner's own shares only
        vm.expectPartialRevert(bytes4(keccak256("WithdrawalNotAnnounced(uint256,address)")));
        vault.withdrawInsurance(1, address(this));
        vm.prank(attacker);
        uint256 back = vault.removeLiquidity(shares, attacker);
        assertApproxEq(back, 500_000e18, 1e9, "the provider's money back");
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, attacker));
        vm.prank(attacker);
        vault.announceInsuranceWithdrawal(1, attacker);
    }

    /// Liquidity shares cannot be minted cheap or redeemed dear by moving the vAMM first.
    function test_liquidityShares_notManipulableByTheMark() public {
        _arm(6);
        _wallet(1_000_000e18);
        uint256 pushed = _tryOpen(ETH, true, 2_000_000e18, 1e18); // traders now in profit at the mark
        assertGt(pushed, 0, "push");
        capital += 1_000_000e18; // the wallet's money counts too
        vm.prank(attacker);
        uint256 shares = vault.addLiquidity(1_000_000e18);
        uint256 s2 = _tryOpen(ETH, false, 1_000_000e18, 1e18); // traders' profit shrinks
        vm.prank(attacker);
        uint256 back = vault.removeLiquidity(shares, attacker);
        assertLe(back, 1_000_000e18, "no gain on the shares");
        vm.prank(attacker);
        token.approve(address(vault), back);
        vm.prank(attacker);
        vault.deposit(back); // count it in the attacker's free collateral
        uint256[] memory ids = new uint256[](2);
        ids[0] = pushed;
        ids[1] = s2;
        vm.roll(block.number + 1);
        _unwindAll(ids);
        _assertNoProfit("shares");
    }

    // ---------------------------------------------------------------- second review

    /// Matched long/short pairs do not use up the pool: limits follow the net exposure, so nobody
    /// can lock liquidity providers and traders out by opening both sides (the review's OI lock).
    function test_review_matchedPairsDoNotLockThePool() public {
        _arm(5);
        uint256 withdrawable = vault.withdrawableLiquidity();
        for (uint256 i; i < 20; ++i) {
            assertGt(_tryOpen(ETH, true, 100_000e18, 20e18), 0, "long");
            assertGt(_tryOpen(ETH, false, 100_000e18, 20e18), 0, "short");
            vm.roll(block.number + 1);
        }
        assertEq(vault.openInterest(), 80_000_000e18, "80M gross");
        assertLt(vault.netExposure(), 1_000_000e18, "about nothing net");
        assertGt(vault.withdrawableLiquidity(), withdrawable * 98 / 100, "providers can still leave");
        vm.prank(alice);
        pm.openPosition(ETH, true, 10_000e18, 5e18, 0); // traders can still open
    }

    /// Funding settlements pass through the vault's funding buffer, not the pool: a deposit
    /// just before a big settlement and a withdrawal just after gain nothing (the review's JIT
    /// liquidity).
    function test_review_jitLiquidityCannotSkimFunding() public {
        uint256 payer = _open(alice, ETH, true, 200_000e18, 5e18);
        _open(bob, ETH, false, 200_000e18, 5e18);
        _setPrice(ethFeed, 1990e18); // mark above index for the whole period: longs will pay
        vm.warp(T0 + 8 hours);
        _setPrice(ethFeed, 1990e18);
        vm.roll(block.number + 1);
        pm.updateFundingRate(ETH);
        vm.warp(T0 + 3 days);
        _setPrice(ethFeed, 1990e18);
        vm.roll(block.number + 1);
        assertGt(pm.pendingFunding(payer), int256(1_000e18), "a large settlement is pending");
        _arm(0);
        vm.startPrank(attacker);
        for (uint256 i; i < 50; ++i) {
            token.faucet(1_000_000e18);
        }
        token.approve(address(vault), type(uint256).max);
        uint256 shares = vault.addLiquidity(50_000_000e18);
        vm.stopPrank();
        vm.prank(alice);
        pm.addMargin(payer, 1e18); // the payer settles
        vm.prank(attacker);
        uint256 back = vault.removeLiquidity(shares, attacker);
        assertLe(back, 50_000_000e18, "no gain");
    }
}
