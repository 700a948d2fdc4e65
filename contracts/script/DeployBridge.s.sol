// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {HevmUser} from "../test/base/Hevm.sol";
import {BridgeDeployer} from "./BridgeDeployer.sol";
import {Vault} from "../src/core/Vault.sol";
import {CollateralToken} from "../src/tokens/CollateralToken.sol";
import {CollateralBridge} from "../src/bridge/CollateralBridge.sol";
import {CollateralDepositor} from "../src/bridge/CollateralDepositor.sol";

/// @notice Deploys the cross-chain collateral bridge on two chains in one run (docs/bridge.md):
/// the CollateralBridge on the home chain (where the Vault is, deployed before by Deploy.s.sol)
/// and a CollateralDepositor on the remote chain, wires them as each other's LayerZero peers
/// and writes the bridge section of the deployment file.
///
///   PRIVATE_KEY=0x.. HOME_RPC_URL=.. REMOTE_RPC_URL=.. VAULT=0x.. RELAYER=0x.. \
///     scripts/forge.sh script script/DeployBridge.s.sol:DeployBridge --broadcast
///
/// Environment:
///   PRIVATE_KEY             the deployer: owns the Vault (to set its bridge) and the new contracts
///   HOME_RPC_URL, REMOTE_RPC_URL  the two chains
///   VAULT                   the home chain's Vault
///   HOME_LZ_ENDPOINT, REMOTE_LZ_ENDPOINT
///                           existing LayerZero EndpointV2s (production: LayerZero's, with the
///                           DVNs and executor configured by the OApps' delegate). Unset: deploy
///                           EndpointV2 + SimpleMessageLib from the npm packages, verified by
///                           RELAYER only (local chains).
///   RELAYER                 the address `perpex relayer` verifies with (local endpoints)
///   HOME_EID, REMOTE_EID    endpoint ids (default: the chain ids)
///   REMOTE_TOKEN            the token locked on the remote chain (default: deploy a vUSDT with a
///                           faucet there)
///   BRIDGE_RESERVE          home collateral (whole tokens) put in the bridge's reserve (default
///                           10,000,000; dev profile: minted, else from the deployer's balance)
///   BRIDGE_LZ_RECEIVE_GAS   executor gas enforced for each delivery (default 250,000)
///   DEPLOY_PROFILE          dev (default) or production
///   BRIDGE_OUT              file to write, relative to contracts/ (default deployments/bridge.json)
contract DeployBridge is HevmUser, BridgeDeployer {
    error RelayerRequired();

    struct Side {
        uint256 fork;
        uint256 chainId;
        uint32 eid;
        uint256 startBlock;
        address endpoint;
        address lib;
        address app; // CollateralBridge (home) or CollateralDepositor (remote)
        address token;
        uint8 decimals;
    }

    function run() external {
        uint256 pk = vm.envUint("PRIVATE_KEY");
        address deployer = vm.addr(pk);
        Vault vault = Vault(vm.envAddress("VAULT"));
        address relayer = vm.envOr("RELAYER", address(0));
        bool dev = keccak256(bytes(vm.envOr("DEPLOY_PROFILE", string("dev")))) == keccak256("dev");
        uint128 gas = uint128(vm.envOr("BRIDGE_LZ_RECEIVE_GAS", uint256(DEFAULT_LZ_RECEIVE_GAS)));
        uint256 reserve = vm.envOr("BRIDGE_RESERVE", uint256(10_000_000)) * 1e18;

        Side memory h = _open(vm.envString("HOME_RPC_URL"), "HOME_EID", "HOME_LZ_ENDPOINT");
        Side memory r = _open(vm.envString("REMOTE_RPC_URL"), "REMOTE_EID", "REMOTE_LZ_ENDPOINT");
        if ((h.endpoint == address(0) || r.endpoint == address(0)) && relayer == address(0)) {
            revert RelayerRequired();
        }

        // home: endpoint, bridge (the Vault's, once), reserve
        vm.selectFork(h.fork);
        vm.startBroadcast(pk);
        if (h.endpoint == address(0)) {
            LocalLz memory l = _deployLocalLz(h.eid, r.eid, deployer, relayer);
            (h.endpoint, h.lib) = (address(l.endpoint), address(l.lib));
        }
        CollateralBridge bridge = _deployHomeBridge(h.endpoint, vault, deployer);
        h.app = address(bridge);
        h.token = address(vault.collateralToken());
        h.decimals = 18;
        if (dev && reserve != 0) CollateralToken(h.token).mint(deployer, reserve);
        _fundReserve(bridge, reserve);
        vm.stopBroadcast();

        // remote: endpoint, token, depositor, wired to the home bridge
        vm.selectFork(r.fork);
        vm.startBroadcast(pk);
        if (r.endpoint == address(0)) {
            LocalLz memory l = _deployLocalLz(r.eid, h.eid, deployer, relayer);
            (r.endpoint, r.lib) = (address(l.endpoint), address(l.lib));
        }
        r.token = vm.envOr("REMOTE_TOKEN", address(0));
        if (r.token == address(0)) r.token = address(new CollateralToken("Virtual USDT", "vUSDT"));
        r.decimals = IERC20Metadata(r.token).decimals();
        CollateralDepositor depositor = _deployDepositor(r.endpoint, IERC20(r.token), h.eid, deployer);
        r.app = address(depositor);
        _wireRemote(depositor, h.eid, h.app, gas);
        vm.stopBroadcast();

        // home: the depositor as peer
        vm.selectFork(h.fork);
        vm.startBroadcast(pk);
        _wireHome(bridge, r.eid, r.app, r.decimals, gas);
        _handOver(bridge, vault, deployer);
        vm.stopBroadcast();

        string memory path = vm.envOr("BRIDGE_OUT", string("deployments/bridge.json"));
        vm.writeFile(
            path,
            string.concat(
                '{"home": ',
                _sideJson(h, "bridge"),
                ', "remote": ',
                _sideJson(r, "depositor"),
                ', "verifier": "',
                vm.toString(relayer),
                '", "lz_receive_gas": ',
                vm.toString(uint256(gas)),
                ', "reserve": "',
                vm.toString(reserve),
                '"}\n'
            )
        );
    }

    function _open(string memory rpc, string memory eidVar, string memory endpointVar)
        internal
        returns (Side memory s)
    {
        s.fork = vm.createFork(rpc);
        vm.selectFork(s.fork);
        s.chainId = block.chainid;
        s.startBlock = block.number;
        s.eid = uint32(vm.envOr(eidVar, block.chainid));
        s.endpoint = vm.envOr(endpointVar, address(0));
    }

    function _sideJson(Side memory s, string memory appName) internal pure returns (string memory) {
        return string.concat(
            '{"chain_id": ',
            vm.toString(s.chainId),
            ', "eid": ',
            vm.toString(uint256(s.eid)),
            ', "start_block": ',
            vm.toString(s.startBlock),
            ', "endpoint": "',
            vm.toString(s.endpoint),
            '", "message_lib": "',
            vm.toString(s.lib),
            '", "',
            appName,
            '": "',
            vm.toString(s.app),
            '", "token": "',
            vm.toString(s.token),
            '", "token_decimals": ',
            vm.toString(uint256(s.decimals)),
            "}"
        );
    }
}
