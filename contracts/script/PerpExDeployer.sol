// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {CollateralToken} from "../src/tokens/CollateralToken.sol";
import {SettableFeed} from "../src/oracle/SettableFeed.sol";
import {PriceOracle} from "../src/oracle/PriceOracle.sol";
import {VirtualAMM} from "../src/core/VirtualAMM.sol";
import {Vault} from "../src/core/Vault.sol";
import {PositionNFT} from "../src/core/PositionNFT.sol";
import {PositionManager} from "../src/core/PositionManager.sol";

/// @notice Deploys and wires the whole protocol. Shared by script/Deploy.s.sol (broadcast) and the
/// Foundry tests (plain calls), so both build exactly the same system.
abstract contract PerpExDeployer {
    struct MarketSpec {
        string pair; // e.g. "ETH/USDT"
        uint256 price; // initial price, WAD
        uint256 quoteDepth; // virtual quote reserve, WAD
        address feed; // existing AggregatorV3 feed; address(0) deploys a SettableFeed
        uint8 feedDecimals; // decimals of a new SettableFeed
    }

    struct Config {
        uint256 liquidity; // counterparty pool seeded in the vault
        uint256 insurance; // insurance fund seed
        uint256 maxUtilization; // open interest / liquidity
        uint256 feeRatio; // vAMM trading fee
        uint256 maxPriceImpact; // vAMM per-trade mark move limit
        uint256 maxPriceMovePerBlock; // vAMM per-block mark move limit
        uint256 maxLeverage;
        uint256 maintenanceMarginRatio;
        uint256 liquidationFeeRatio; // liquidation penalty
        uint256 liquidationRewardShare; // keeper's share of the penalty
        uint256 maxSpread; // mark/index divergence for the worse-price margin checks and liquidation bound
        uint256 fundingInterval;
        uint256 maxFundingRate;
        uint32 maxStaleness; // oracle staleness limit
        uint256 faucetLimit; // vUSDT faucet per-call limit
        // minimum position: the keeper's reward on it pays a liquidation's gas at this gas price
        uint256 liquidationGasPrice; // wei per gas
        uint256 nativePrice; // the chain's native token in quote (WAD)
    }

    /// Gas a liquidation costs (docs/gas.md: the worst measured case, rounded up).
    uint256 internal constant LIQUIDATION_GAS = 220_000;

    struct Deployed {
        CollateralToken token;
        Vault vault;
        PriceOracle oracle;
        PositionNFT nft;
        PositionManager pm;
        VirtualAMM[] vamms;
        address[] feeds;
        bytes32[] marketIds;
    }

    /// The dev profile (local chains, tests, the demo): a staleness limit of a year, because tests
    /// and the demo move the clock by hours without touching the feeds; positions sized for
    /// liquidations at 10 gwei (minimum notional 440 vUSDT).
    function _defaultConfig() internal pure returns (Config memory) {
        return Config({
            liquidity: 100_000_000e18,
            insurance: 1_000_000e18,
            maxUtilization: 0.8e18,
            feeRatio: 0.001e18,
            maxPriceImpact: 0.05e18,
            maxPriceMovePerBlock: 0.025e18,
            maxLeverage: 20e18,
            maintenanceMarginRatio: 0.025e18,
            liquidationFeeRatio: 0.02e18,
            liquidationRewardShare: 0.5e18,
            maxSpread: 0.01e18,
            fundingInterval: 8 hours,
            maxFundingRate: 0.01e18,
            maxStaleness: 365 days,
            faucetLimit: 1_000_000e18,
            liquidationGasPrice: 10 gwei,
            nativePrice: 2000e18
        });
    }

    /// The production profile: a staleness limit of 3 hours (Chainlink's ETH/USD and BTC/USD
    /// heartbeat is 1 hour) and a minimum position sized for liquidations at 30 gwei with the
    /// native token at 3,000 (1,980 vUSDT).
    function _productionConfig() internal pure returns (Config memory c) {
        c = _defaultConfig();
        c.maxStaleness = 3 hours;
        c.liquidationGasPrice = 30 gwei;
        c.nativePrice = 3000e18;
    }

    /// The smallest position whose keeper reward (penalty x keeper share) pays LIQUIDATION_GAS.
    function _minNotional(Config memory c) internal pure returns (uint256) {
        uint256 gasCost = LIQUIDATION_GAS * c.liquidationGasPrice * c.nativePrice / 1e18;
        uint256 rewardRatio = c.liquidationFeeRatio * c.liquidationRewardShare / 1e18;
        if (rewardRatio == 0) return 0;
        return (gasCost * 1e18 + rewardRatio - 1) / rewardRatio;
    }

    /// @param self the account that sends every call (the broadcasting EOA, or the test contract)
    function _deploySystem(address self, Config memory c, MarketSpec[] memory specs)
        internal
        returns (Deployed memory d)
    {
        d.token = new CollateralToken("Virtual USDT", "vUSDT");
        d.vault = new Vault(d.token, c.maxUtilization);
        d.oracle = new PriceOracle();
        d.nft = new PositionNFT();
        d.pm = new PositionManager(d.vault, d.oracle, d.nft);
        d.vault.setPositionManager(address(d.pm));
        d.nft.setPositionManager(address(d.pm));
        if (c.faucetLimit != 1_000_000e18) d.token.configureFaucet(true, c.faucetLimit);

        d.vamms = new VirtualAMM[](specs.length);
        d.feeds = new address[](specs.length);
        d.marketIds = new bytes32[](specs.length);
        for (uint256 i; i < specs.length; ++i) {
            MarketSpec memory s = specs[i];
            bytes32 id = keccak256(bytes(s.pair));
            address feed = s.feed;
            if (feed == address(0)) {
                int256 answer = int256(s.price * 10 ** s.feedDecimals / 1e18);
                feed = address(new SettableFeed(s.feedDecimals, s.pair, answer));
            }
            d.oracle.setFeed(id, feed, c.maxStaleness);
            VirtualAMM vamm = new VirtualAMM(
                s.pair, address(d.pm), s.quoteDepth * 1e18 / s.price, s.quoteDepth, c.feeRatio, c.maxPriceImpact
            );
            if (c.maxPriceMovePerBlock != c.maxPriceImpact) vamm.setBlockPriceMoveLimit(c.maxPriceMovePerBlock);
            d.pm.addMarket(
                s.pair,
                vamm,
                c.maxLeverage,
                c.maintenanceMarginRatio,
                c.liquidationFeeRatio,
                c.fundingInterval,
                c.maxFundingRate
            );
            d.pm.setSafetyParams(id, _minNotional(c), c.liquidationRewardShare, c.maxSpread);
            d.vamms[i] = vamm;
            d.feeds[i] = feed;
            d.marketIds[i] = id;
        }

        uint256 seed = c.liquidity + c.insurance;
        if (seed != 0) {
            d.token.mint(self, seed);
            d.token.approve(address(d.vault), seed);
            if (c.liquidity != 0) d.vault.addLiquidity(c.liquidity);
            if (c.insurance != 0) d.vault.fundInsurance(c.insurance);
        }
    }
}
