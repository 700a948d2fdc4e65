// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {CollateralToken} from "../src/tokens/CollateralToken.sol";
import {SettableFeed} from "../src/oracle/SettableFeed.sol";
import {PriceOracle} from "../src/oracle/PriceOracle.sol";
import {VirtualAMM} from "../src/core/VirtualAMM.sol";
import {Vault} from "../src/core/Vault.sol";
import {PositionNFT} from "../src/core/PositionNFT.sol";
import {PositionManager} from "../src/core/PositionManager.sol";
import {PerpExGovToken} from "../src/governance/PerpExGovToken.sol";
import {PerpExGovernor} from "../src/governance/PerpExGovernor.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";

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
        uint256 fundingReward; // paid to whoever updates a market's funding, from insurance
    }

    /// Governance: a PEX token, a Governor and a TimelockController that ends up owning the
    /// PositionManager, the Vault, the PriceOracle, the PositionNFT and every vAMM.
    struct GovConfig {
        uint256 supply; // PEX minted to the deployer
        uint48 votingDelay; // seconds
        uint32 votingPeriod; // seconds
        uint256 timelockDelay; // seconds
        uint256 quorumPercent;
        uint256 proposalThreshold; // PEX
    }

    struct Governance {
        PerpExGovToken token;
        TimelockController timelock;
        PerpExGovernor governor;
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
            nativePrice: 2000e18,
            fundingReward: 1e18
        });
    }

    /// Governance for local chains: decisions in about two minutes.
    function _devGovConfig() internal pure returns (GovConfig memory) {
        return GovConfig({
            supply: 10_000_000e18,
            votingDelay: 1,
            votingPeriod: 60,
            timelockDelay: 30,
            quorumPercent: 4,
            proposalThreshold: 0
        });
    }

    /// Governance for real networks: a day to look, five to vote, two before it applies.
    function _productionGovConfig() internal pure returns (GovConfig memory) {
        return GovConfig({
            supply: 10_000_000e18,
            votingDelay: 1 days,
            votingPeriod: 5 days,
            timelockDelay: 2 days,
            quorumPercent: 4,
            proposalThreshold: 100_000e18
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
        c.fundingReward = 5e18;
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

        if (c.fundingReward != 0) d.pm.setFundingReward(c.fundingReward);

        uint256 seed = c.liquidity + c.insurance;
        if (seed != 0) {
            d.token.mint(self, seed);
            d.token.approve(address(d.vault), seed);
            if (c.liquidity != 0) d.vault.addLiquidity(c.liquidity);
            if (c.insurance != 0) d.vault.fundInsurance(c.insurance);
        }
    }

    /// Hand the protocol to governance: deploy PEX (to `self`, who delegates to itself), a
    /// TimelockController and the Governor; make `self` the guardian (pause only); then move the
    /// ownership of the PositionManager, the Vault, the PriceOracle, the PositionNFT and every
    /// vAMM to the timelock. The timelock starts with no delay and `self` as its only proposer
    /// and executor, accepts the ownerships and sets its real delay, then the Governor becomes
    /// its proposer and canceller, anyone its executor, and `self` gives up every role.
    function _deployGovernance(Deployed memory d, GovConfig memory g, address self)
        internal
        returns (Governance memory gov)
    {
        gov.token = new PerpExGovToken(self, g.supply);
        gov.token.delegate(self);
        address[] memory me = new address[](1);
        me[0] = self;
        gov.timelock = new TimelockController(0, me, me, self);
        gov.governor =
            new PerpExGovernor(gov.token, gov.timelock, g.votingDelay, g.votingPeriod, g.proposalThreshold, g.quorumPercent);

        d.pm.setParamChangeDelay(0); // the timelock's delay is the delay
        d.pm.setGuardian(self);

        uint256 n = 4 + d.vamms.length;
        address[] memory targets = new address[](n);
        targets[0] = address(d.pm);
        targets[1] = address(d.vault);
        targets[2] = address(d.oracle);
        targets[3] = address(d.nft);
        for (uint256 i; i < d.vamms.length; ++i) {
            targets[4 + i] = address(d.vamms[i]);
        }
        uint256[] memory values = new uint256[](n);
        bytes[] memory calls = new bytes[](n);
        for (uint256 i; i < n; ++i) {
            Ownable2StepLike(targets[i]).transferOwnership(address(gov.timelock));
            calls[i] = abi.encodeWithSignature("acceptOwnership()");
        }
        gov.timelock.scheduleBatch(targets, values, calls, bytes32(0), bytes32("perpex:owners"), 0);
        gov.timelock.executeBatch(targets, values, calls, bytes32(0), bytes32("perpex:owners"));
        bytes memory setDelay = abi.encodeCall(TimelockController.updateDelay, (g.timelockDelay));
        gov.timelock.schedule(address(gov.timelock), 0, setDelay, bytes32(0), bytes32("perpex:delay"), 0);
        gov.timelock.execute(address(gov.timelock), 0, setDelay, bytes32(0), bytes32("perpex:delay"));

        gov.timelock.grantRole(gov.timelock.PROPOSER_ROLE(), address(gov.governor));
        gov.timelock.grantRole(gov.timelock.CANCELLER_ROLE(), address(gov.governor));
        gov.timelock.grantRole(gov.timelock.EXECUTOR_ROLE(), address(0));
        gov.timelock.revokeRole(gov.timelock.PROPOSER_ROLE(), self);
        gov.timelock.revokeRole(gov.timelock.CANCELLER_ROLE(), self);
        gov.timelock.revokeRole(gov.timelock.EXECUTOR_ROLE(), self);
        gov.timelock.renounceRole(gov.timelock.DEFAULT_ADMIN_ROLE(), self);
    }
}

interface Ownable2StepLike {
    function transferOwnership(address newOwner) external;
}
