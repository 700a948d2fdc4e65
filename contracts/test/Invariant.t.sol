// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {HevmUser} from "./base/Hevm.sol";
import {IPositionManager} from "../src/interfaces/IPerpEx.sol";
import {PositionManager} from "../src/core/PositionManager.sol";
import {PositionManagerBase} from "../src/core/PositionManagerBase.sol";
import {Vault} from "../src/core/Vault.sol";
import {PositionNFT} from "../src/core/PositionNFT.sol";
import {CollateralToken} from "../src/tokens/CollateralToken.sol";
import {SettableFeed} from "../src/oracle/SettableFeed.sol";

/// Drives the protocol with random but valid-looking actions from a few traders and a keeper,
/// and keeps ghost records the invariants compare against.
contract Handler is HevmUser {
    PositionManager internal pm;
    Vault internal vault;
    PositionNFT internal nft;
    CollateralToken internal token;
    bytes32[2] internal markets;
    SettableFeed[2] internal feeds;
    uint256[2] internal basePrice;

    address[3] public actors = [address(0xA11CE), address(0xB0B), address(0xCA201)];
    address public constant KEEPER = address(0x4EE9E4);

    uint256[] public openIds;
    mapping(uint256 => address) public openerOf;

    // funding ghosts
    mapping(bytes32 => uint256) public lastUpdate;
    uint256 public fundingUpdates;
    bool public fundingTooSoon; // an update succeeded less than one interval after the previous one
    bool public liquidationMismatch; // liquidatePosition disagreed with isPositionLiquidatable
    uint256 public liquidations;
    uint256 public partialLiquidations;
    uint256 public calls;

    constructor(
        PositionManager pm_,
        Vault vault_,
        PositionNFT nft_,
        CollateralToken token_,
        bytes32[2] memory markets_,
        SettableFeed[2] memory feeds_
    ) {
        pm = pm_;
        vault = vault_;
        nft = nft_;
        token = token_;
        markets = markets_;
        feeds = feeds_;
        for (uint256 i; i < 2; ++i) {
            basePrice[i] = pm.indexPrice(markets_[i]);
            lastUpdate[markets_[i]] = pm.lastFundingTime(markets_[i]);
        }
        for (uint256 i; i < 3; ++i) {
            vm.startPrank(actors[i]);
            token.approve(address(vault), type(uint256).max);
            vm.stopPrank();
        }
    }

    function openCount() external view returns (uint256) {
        return openIds.length;
    }

    function _actor(uint256 seed) internal view returns (address) {
        return actors[seed % 3];
    }

    function _b(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + (x % (hi - lo + 1));
    }

    function _removeAt(uint256 i) internal {
        openIds[i] = openIds[openIds.length - 1];
        openIds.pop();
    }

    // ---------------------------------------------------------------- actions

    function deposit(uint256 actorSeed, uint256 amount) external {
        calls++;
        address a = _actor(actorSeed);
        amount = _b(amount, 1e18, 200_000e18);
        vm.startPrank(a);
        token.faucet(amount);
        vault.deposit(amount);
        vm.stopPrank();
    }

    function withdraw(uint256 actorSeed, uint256 amount) external {
        calls++;
        address a = _actor(actorSeed);
        uint256 free = vault.freeCollateral(a);
        if (free == 0) return;
        amount = _b(amount, 1, free);
        vm.prank(a);
        vault.withdraw(amount);
    }

    function open(uint256 actorSeed, uint256 marketSeed, bool isLong, uint256 collateral, uint256 leverage)
        external
    {
        calls++;
        address a = _actor(actorSeed);
        collateral = _b(collateral, 1e18, 50_000e18);
        leverage = _b(leverage, 1e18, 20e18);
        if (vault.freeCollateral(a) < collateral * 2) return;
        vm.prank(a);
        try pm.openPosition(markets[marketSeed % 2], isLong, collateral, leverage, 0) returns (uint256 id) {
            openIds.push(id);
            openerOf[id] = a;
        } catch {}
    }

    function close(uint256 idSeed) external {
        calls++;
        if (openIds.length == 0) return;
        uint256 i = idSeed % openIds.length;
        uint256 id = openIds[i];
        vm.prank(openerOf[id]);
        try pm.closePosition(id, 0) {
            _removeAt(i);
        } catch {}
    }

    function reduce(uint256 idSeed, uint256 fraction) external {
        calls++;
        if (openIds.length == 0) return;
        uint256 id = openIds[idSeed % openIds.length];
        uint256 size = pm.getPosition(id).size * _b(fraction, 1, 99) / 100;
        vm.prank(openerOf[id]);
        try pm.reducePosition(id, size, 0, type(uint256).max, block.timestamp) {} catch {}
    }

    function addMargin(uint256 idSeed, uint256 amount) external {
        calls++;
        if (openIds.length == 0) return;
        uint256 id = openIds[idSeed % openIds.length];
        amount = _b(amount, 1e18, 5_000e18);
        vm.prank(openerOf[id]);
        try pm.addMargin(id, amount) {} catch {}
    }

    function removeMargin(uint256 idSeed, uint256 amount) external {
        calls++;
        if (openIds.length == 0) return;
        uint256 id = openIds[idSeed % openIds.length];
        amount = _b(amount, 1e18, 5_000e18);
        vm.prank(openerOf[id]);
        try pm.removeMargin(id, amount) {} catch {}
    }

    function liquidate(uint256 idSeed) external {
        calls++;
        if (openIds.length == 0) return;
        uint256 i = idSeed % openIds.length;
        uint256 id = openIds[i];
        bool should = pm.isPositionLiquidatable(id);
        vm.prank(KEEPER);
        try pm.liquidatePosition(id) {
            if (!should) liquidationMismatch = true;
            liquidations++;
            if (pm.getPosition(id).size == 0) _removeAt(i);
            else partialLiquidations++;
        } catch (bytes memory reason) {
            // a liquidatable position may only be refused when nothing fits inside the price
            // bounds this block (the rest waits for the next call)
            if (should && bytes4(reason) != PositionManagerBase.LiquidationOutOfBounds.selector) {
                liquidationMismatch = true;
            }
        }
    }

    function addLiquidity(uint256 actorSeed, uint256 amount) external {
        calls++;
        address a = _actor(actorSeed);
        amount = _b(amount, 1e18, 500_000e18);
        vm.startPrank(a);
        token.faucet(amount);
        vault.addLiquidity(amount);
        vm.stopPrank();
    }

    function removeLiquidity(uint256 actorSeed, uint256 fraction) external {
        calls++;
        address a = _actor(actorSeed);
        uint256 shares = vault.sharesOf(a) * _b(fraction, 1, 100) / 100;
        if (shares == 0) return;
        vm.prank(a);
        try vault.removeLiquidity(shares, a) {} catch {}
    }

    function nextBlock() external {
        calls++;
        vm.roll(block.number + 1);
    }

    function movePrice(uint256 marketSeed, uint256 bps) external {
        calls++;
        uint256 k = marketSeed % 2;
        uint256 price = basePrice[k] * _b(bps, 7_000, 13_000) / 10_000;
        feeds[k].setPrice(int256(price / 1e10));
        pm.indexPrice(markets[k]); // keep it valid
        vm.roll(block.number + 1);
    }

    function warp(uint256 secs) external {
        calls++;
        vm.warp(block.timestamp + _b(secs, 1, 6 hours));
        vm.roll(block.number + 1);
        // keep the feeds fresh
        feeds[0].setPrice(feeds[0].latestAnswer());
        feeds[1].setPrice(feeds[1].latestAnswer());
    }

    function updateFunding(uint256 marketSeed) external {
        calls++;
        bytes32 m = markets[marketSeed % 2];
        try pm.updateFundingRate(m) {
            if (block.timestamp < lastUpdate[m] + pm.getMarket(m).fundingInterval) fundingTooSoon = true;
            lastUpdate[m] = block.timestamp;
            fundingUpdates++;
        } catch {}
    }
}

contract InvariantTest is Fixture {
    Handler internal handler;

    function setUp() public override {
        super.setUp();
        bytes32[2] memory ms = [ETH, BTC];
        SettableFeed[2] memory fs = [ethFeed, btcFeed];
        handler = new Handler(pm, vault, nft, token, ms, fs);
        // the handler sets prices on the feeds
        ethFeed.setUpdater(address(handler), true);
        btcFeed.setUpdater(address(handler), true);
        targetContract(address(handler));
    }

    /// free + locked + insurance + liquidity == the vault's token balance
    function invariant_vaultBalanceEqualsBuckets() public view {
        uint256 sum = uint256(vault.totalFree()) + vault.totalLocked() + vault.insuranceFund() + vault.liquidity();
        assertEq(token.balanceOf(address(vault)), sum, "vault balance != free + locked + insurance + liquidity");
    }

    /// the net exposure the vault limits is exactly the markets' |long notional - short notional|
    function invariant_netExposureMatchesPositions() public view {
        int256[2] memory net;
        uint256 n = handler.openCount();
        for (uint256 i; i < n; ++i) {
            IPositionManager.Position memory p = pm.getPosition(handler.openIds(i));
            uint256 k = p.marketId == ETH ? 0 : 1;
            net[k] += p.isLong ? int256(p.notional) : -int256(p.notional);
        }
        uint256 sum;
        for (uint256 k; k < 2; ++k) {
            sum += net[k] >= 0 ? uint256(net[k]) : uint256(-net[k]);
        }
        assertEq(vault.netExposure(), sum, "net exposure");
    }

    /// funding is zero-sum: payers settle at least what receivers take, so the buffer only lends
    /// from the pool while receivers settle ahead of payers, never more than those payers owe
    function invariant_fundingBufferCoversSettledReceivers() public view {
        int256 owedByOpen;
        uint256 n = handler.openCount();
        for (uint256 i; i < n; ++i) {
            owedByOpen += pm.pendingFunding(handler.openIds(i));
        }
        // what is in the buffer plus what open positions still owe (net) never falls below zero
        assertGe(vault.fundingBuffer() + owedByOpen, int256(0), "funding paid < funding received");
    }

    /// liquidity shares: the total is the sum of every holder's (the test contract seeded the pool)
    function invariant_sharesAddUp() public view {
        uint256 sum = vault.sharesOf(address(this));
        for (uint256 i; i < 3; ++i) {
            sum += vault.sharesOf(handler.actors(i));
        }
        assertEq(vault.totalShares(), sum, "shares");
    }

    /// the free bucket is exactly the sum of every account's free collateral
    function invariant_totalFreeIsSumOfAccounts() public view {
        // the keeper's rewards, and the funding-update rewards of the handler (it calls the updates)
        uint256 sum = vault.freeCollateral(handler.KEEPER()) + vault.freeCollateral(address(handler));
        for (uint256 i; i < 3; ++i) {
            sum += vault.freeCollateral(handler.actors(i));
        }
        assertEq(vault.totalFree(), sum, "totalFree");
    }

    /// locked collateral and open interest are exactly the open positions' collateral and notional
    function invariant_lockedAndOpenInterestMatchPositions() public view {
        uint256 locked;
        uint256 oi;
        uint256 n = handler.openCount();
        for (uint256 i; i < n; ++i) {
            IPositionManager.Position memory p = pm.getPosition(handler.openIds(i));
            assertGt(p.size, 0, "tracked position exists");
            locked += p.collateral;
            oi += p.notional;
        }
        assertEq(vault.totalLocked(), locked, "locked");
        assertEq(vault.openInterest(), oi, "open interest");
    }

    /// funding is updated at most once per interval
    function invariant_fundingAtMostOncePerInterval() public view {
        assertFalse(handler.fundingTooSoon(), "funding updated twice within an interval");
        for (uint256 k; k < 2; ++k) {
            bytes32 m = k == 0 ? ETH : BTC;
            assertEq(pm.lastFundingTime(m), handler.lastUpdate(m), "lastFundingTime");
            assertEq(pm.nextFundingTime(m), pm.lastFundingTime(m) + 8 hours, "next");
        }
    }

    /// liquidatePosition succeeds exactly when isPositionLiquidatable says so
    function invariant_liquidationMatchesView() public view {
        assertFalse(handler.liquidationMismatch(), "liquidation disagreed with isPositionLiquidatable");
    }

    /// position NFTs never move: each belongs to the trader who opened it
    function invariant_nftsStayWithTheirOpener() public view {
        uint256 n = handler.openCount();
        uint256[3] memory counts;
        for (uint256 i; i < n; ++i) {
            uint256 id = handler.openIds(i);
            address opener = handler.openerOf(id);
            assertEq(nft.ownerOf(id), opener, "owner changed");
            for (uint256 a; a < 3; ++a) {
                if (handler.actors(a) == opener) counts[a]++;
            }
        }
        for (uint256 a; a < 3; ++a) {
            assertEq(nft.balanceOf(handler.actors(a)), counts[a], "nft balance");
        }
    }
}
