// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestBase} from "./TestBase.sol";
import {PerpExDeployer} from "../../script/PerpExDeployer.sol";
import {IPositionManager, IPositionManagerEvents, IPositionNFTEvents} from "../../src/interfaces/IPerpEx.sol";
import {CollateralToken} from "../../src/tokens/CollateralToken.sol";
import {SettableFeed} from "../../src/oracle/SettableFeed.sol";
import {PriceOracle} from "../../src/oracle/PriceOracle.sol";
import {VirtualAMM} from "../../src/core/VirtualAMM.sol";
import {Vault} from "../../src/core/Vault.sol";
import {PositionNFT} from "../../src/core/PositionNFT.sol";
import {PositionManager} from "../../src/core/PositionManager.sol";

/// @notice The whole protocol deployed exactly as script/Deploy.s.sol does (shared deployer code),
/// owned by the test contract, with helpers for traders.
abstract contract Fixture is TestBase, PerpExDeployer, IPositionManagerEvents, IPositionNFTEvents {
    uint256 internal constant WAD = 1e18;
    uint256 internal constant T0 = 1_700_000_000;

    CollateralToken internal token;
    Vault internal vault;
    PriceOracle internal oracle;
    PositionNFT internal nft;
    PositionManager internal pm;
    VirtualAMM internal ethAmm;
    VirtualAMM internal btcAmm;
    SettableFeed internal ethFeed;
    SettableFeed internal btcFeed;
    bytes32 internal ETH;
    bytes32 internal BTC;
    Config internal cfg;

    address internal alice = address(0xA11CE);
    address internal bob = address(0xB0B);
    address internal carol = address(0xCA201);
    address internal keeper = address(0x4EE9E4);

    function setUp() public virtual {
        vm.warp(T0);
        vm.roll(100);
        cfg = _defaultConfig();
        MarketSpec[] memory specs = new MarketSpec[](2);
        specs[0] = MarketSpec("ETH/USDT", 2000e18, 200_000_000e18, address(0), 8);
        specs[1] = MarketSpec("BTC/USDT", 60_000e18, 200_000_000e18, address(0), 8);
        Deployed memory d = _deploySystem(address(this), cfg, specs);
        token = d.token;
        vault = d.vault;
        oracle = d.oracle;
        nft = d.nft;
        pm = d.pm;
        ethAmm = d.vamms[0];
        btcAmm = d.vamms[1];
        ethFeed = SettableFeed(d.feeds[0]);
        btcFeed = SettableFeed(d.feeds[1]);
        ETH = d.marketIds[0];
        BTC = d.marketIds[1];
    }

    // ---------------------------------------------------------------- helpers

    /// PositionLiquidated's fields (a struct keeps the 13 of them off the stack).
    struct LiqEvent {
        uint256 tokenId;
        address owner;
        bytes32 marketId;
        address liquidator;
        uint256 price;
        int256 pnl;
        uint256 reward;
        uint256 refund;
        uint256 badDebt;
        uint256 size;
        uint256 remaining;
        int256 funding;
        uint256 insuranceFee;
    }

    function _expectLiquidated(LiqEvent memory e) internal {
        vm.expectEmit(true, true, true, true, address(pm));
        emit PositionLiquidated(
            e.tokenId,
            e.owner,
            e.marketId,
            e.liquidator,
            e.price,
            e.pnl,
            e.reward,
            e.refund,
            e.badDebt,
            e.size,
            e.remaining,
            e.funding,
            e.insuranceFee
        );
    }

    function _fund(address who, uint256 amount) internal {
        vm.startPrank(who);
        token.faucet(amount);
        token.approve(address(vault), amount);
        vault.deposit(amount);
        vm.stopPrank();
    }

    function _open(address who, bytes32 market, bool isLong, uint256 collateral, uint256 leverage)
        internal
        returns (uint256 tokenId)
    {
        vm.prank(who);
        tokenId = pm.openPosition(market, isLong, collateral, leverage, 0);
    }

    function _close(address who, uint256 tokenId) internal {
        vm.prank(who);
        pm.closePosition(tokenId, 0);
    }

    /// Set a feed's price from a WAD price (feeds have 8 decimals).
    function _setPrice(SettableFeed feed, uint256 priceWad) internal {
        feed.setPrice(int256(priceWad / 1e10));
    }

    function _pos(uint256 tokenId) internal view returns (IPositionManager.Position memory) {
        return pm.getPosition(tokenId);
    }

    function _assertSolvent() internal view {
        assertEq(token.balanceOf(address(vault)), vault.totalAccounted(), "vault balance != buckets");
    }

    /// margin and maintenance margin exactly as the keeper computes them (see PositionManager docs)
    function _expectedHealth(uint256 tokenId, uint256 index) internal view returns (int256 margin, uint256 mm) {
        IPositionManager.Position memory p = pm.getPosition(tokenId);
        (int256 cumLong, int256 cumShort) = pm.cumulativeFunding(p.marketId);
        int256 cum = p.isLong ? cumLong : cumShort;
        int256 pnl = (int256(index) - int256(p.entryPrice)) * int256(p.size) / 1e18;
        int256 owed = int256(p.size) * (cum - p.entryFundingIndex);
        int256 funding = owed > 0 ? (owed + 1e18 - 1) / 1e18 : owed / 1e18; // payers round up
        if (!p.isLong) pnl = -pnl;
        margin = int256(p.collateral) + pnl - funding;
        mm = p.size * index / 1e18 * pm.getMarket(p.marketId).maintenanceMarginRatio / 1e18;
    }
}
