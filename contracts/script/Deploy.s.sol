// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {HevmUser} from "../test/base/Hevm.sol";
import {PerpExDeployer} from "./PerpExDeployer.sol";

/// @notice Deploys Perp-EX (vUSDT, Vault, PriceOracle, PositionNFT, PositionManager, one vAMM and
/// one oracle feed per market for ETH/USDT and BTC/USDT) and writes the deployment file.
///
///   PRIVATE_KEY=0x.. scripts/forge.sh script script/Deploy.s.sol:Deploy --rpc-url <RPC> --broadcast
///
/// Environment (all optional except PRIVATE_KEY):
///   DEPLOY_PROFILE        "dev" (default: local chains, tests, the demo) or "production" (oracle
///                         staleness 3 hours, minimum position sized for 30 gwei; needs ETH_FEED
///                         and BTC_FEED: it never deploys settable feeds). See PerpExDeployer.
///   DEPLOYMENT_OUT        file to write, relative to contracts/ (default deployments/<chainid>.json;
///                         must be under contracts/deployments/)
///   ETH_PRICE, BTC_PRICE  initial prices in whole USDT (default 2000, 60000)
///   ETH_FEED, BTC_FEED    existing Chainlink AggregatorV3 feed addresses (default: deploy SettableFeed)
///   VAMM_QUOTE_DEPTH      virtual quote reserve per market in whole USDT (default 200,000,000)
///   VAULT_LIQUIDITY       counterparty liquidity seed in whole vUSDT (default 100,000,000)
///   INSURANCE_FUND        insurance fund seed in whole vUSDT (default 1,000,000)
///   FUNDING_INTERVAL      seconds (default 28800 = 8 h)
///   ORACLE_MAX_STALENESS  seconds (dev default 31536000 = 365 days, for local chains whose clock
///                         tests move by hours; production default 10800 = 3 hours)
///   GOVERNANCE            1 (default): hand the protocol to a PEX Governor and its timelock (the
///                         deployer holds the PEX supply and stays guardian: pause only);
///                         0: the deployer stays the owner
///   LIQUIDATION_GAS_PRICE_GWEI, NATIVE_PRICE
///                         the gas price and native token price (whole USDT) the minimum position
///                         is sized for (dev 10 gwei / 2000, production 30 gwei / 3000)
contract Deploy is HevmUser, PerpExDeployer {
    error UnknownProfile(string profile);
    error FeedRequired(string pair);

    function run() external returns (Deployed memory d) {
        uint256 pk = vm.envUint("PRIVATE_KEY");
        address deployer = vm.addr(pk);
        uint256 startBlock = block.number;

        string memory profile = vm.envOr("DEPLOY_PROFILE", string("dev"));
        bool production = keccak256(bytes(profile)) == keccak256("production");
        if (!production && keccak256(bytes(profile)) != keccak256("dev")) revert UnknownProfile(profile);
        Config memory c = production ? _productionConfig() : _defaultConfig();
        c.liquidity = vm.envOr("VAULT_LIQUIDITY", uint256(100_000_000)) * 1e18;
        c.insurance = vm.envOr("INSURANCE_FUND", uint256(1_000_000)) * 1e18;
        c.fundingInterval = vm.envOr("FUNDING_INTERVAL", uint256(8 hours));
        c.maxStaleness = uint32(vm.envOr("ORACLE_MAX_STALENESS", uint256(c.maxStaleness)));
        c.liquidationGasPrice = vm.envOr("LIQUIDATION_GAS_PRICE_GWEI", c.liquidationGasPrice / 1 gwei) * 1 gwei;
        c.nativePrice = vm.envOr("NATIVE_PRICE", c.nativePrice / 1e18) * 1e18;
        uint256 depth = vm.envOr("VAMM_QUOTE_DEPTH", uint256(200_000_000)) * 1e18;

        MarketSpec[] memory specs = new MarketSpec[](2);
        specs[0] = MarketSpec("ETH/USDT", vm.envOr("ETH_PRICE", uint256(2000)) * 1e18, depth, vm.envOr("ETH_FEED", address(0)), 8);
        specs[1] = MarketSpec("BTC/USDT", vm.envOr("BTC_PRICE", uint256(60000)) * 1e18, depth, vm.envOr("BTC_FEED", address(0)), 8);
        if (production) {
            for (uint256 i; i < specs.length; ++i) {
                if (specs[i].feed == address(0)) revert FeedRequired(specs[i].pair);
            }
        }

        bool governed = vm.envOr("GOVERNANCE", uint256(1)) != 0;
        vm.startBroadcast(pk);
        d = _deploySystem(deployer, c, specs);
        Governance memory gov;
        if (governed) gov = _deployGovernance(d, production ? _productionGovConfig() : _devGovConfig(), deployer);
        vm.stopBroadcast();

        string memory path =
            vm.envOr("DEPLOYMENT_OUT", string.concat("deployments/", vm.toString(block.chainid), ".json"));
        string memory json = _json(d, specs, deployer, startBlock, c, profile);
        if (governed) json = string.concat(_trimEnd(json), _govJson(gov), "}\n");
        vm.writeFile(path, json);
    }

    /// The JSON without its closing brace and newline.
    function _trimEnd(string memory json) internal pure returns (string memory) {
        bytes memory b = bytes(json);
        bytes memory out = new bytes(b.length - 2);
        for (uint256 i; i < out.length; ++i) {
            out[i] = b[i];
        }
        return string(out);
    }

    function _govJson(Governance memory gov) internal pure returns (string memory) {
        return string.concat(
            ', "governance": {"token": "',
            vm.toString(address(gov.token)),
            '", "timelock": "',
            vm.toString(address(gov.timelock)),
            '", "governor": "',
            vm.toString(address(gov.governor)),
            '"}'
        );
    }

    function _json(
        Deployed memory d,
        MarketSpec[] memory specs,
        address deployer,
        uint256 startBlock,
        Config memory c,
        string memory profile
    ) internal view returns (string memory) {
        string memory head = string.concat(
            '{"chain_id": ',
            vm.toString(_chainId()),
            ', "start_block": ',
            vm.toString(startBlock),
            ', "deployer": "',
            vm.toString(deployer),
            '", "profile": "',
            profile,
            '", "funding_interval": ',
            vm.toString(c.fundingInterval),
            ', "collateral_decimals": 18'
        );
        string memory contracts_ = string.concat(
            ', "contracts": {"PositionManager": "',
            vm.toString(address(d.pm)),
            '", "PositionNFT": "',
            vm.toString(address(d.nft)),
            '", "Vault": "',
            vm.toString(address(d.vault)),
            '", "CollateralToken": "',
            vm.toString(address(d.token)),
            '", "PriceOracle": "',
            vm.toString(address(d.oracle)),
            '"}'
        );
        return string.concat(head, contracts_, ', "markets": {', _marketsJson(d, specs), "}}\n");
    }

    function _marketsJson(Deployed memory d, MarketSpec[] memory specs) internal pure returns (string memory markets) {
        for (uint256 i; i < specs.length; ++i) {
            markets = string.concat(
                markets,
                i == 0 ? "" : ",",
                '"',
                specs[i].pair,
                '": {"market_id": "',
                vm.toString(d.marketIds[i]),
                '", "vamm": "',
                vm.toString(address(d.vamms[i])),
                '", "oracle_feed": "',
                vm.toString(d.feeds[i]),
                '", "initial_price": "',
                vm.toString(specs[i].price / 1e18),
                '", "feed_decimals": ',
                vm.toString(uint256(specs[i].feedDecimals)),
                "}"
            );
        }
    }

    function _chainId() private view returns (uint256) {
        return block.chainid;
    }
}
