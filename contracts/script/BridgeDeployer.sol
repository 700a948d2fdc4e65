// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {EndpointV2} from "@layerzerolabs/lz-evm-protocol-v2/contracts/EndpointV2.sol";
import {SimpleMessageLib} from "@layerzerolabs/lz-evm-protocol-v2/contracts/messagelib/SimpleMessageLib.sol";
import {ExecutorOptions} from "@layerzerolabs/lz-evm-messagelib-v2/contracts/libs/ExecutorOptions.sol";
import {EnforcedOptionParam} from "@layerzerolabs/oapp-evm/contracts/oapp/interfaces/IOAppOptionsType3.sol";
import {Vault} from "../src/core/Vault.sol";
import {CollateralBridge} from "../src/bridge/CollateralBridge.sol";
import {CollateralDepositor} from "../src/bridge/CollateralDepositor.sol";
import {BridgeMessages} from "../src/bridge/BridgeMessages.sol";

/// @notice Deploys and wires the cross-chain collateral bridge (docs/bridge.md): on local chains
/// also LayerZero's own EndpointV2 and SimpleMessageLib from the npm packages, with the relayer
/// (`perpex relayer`) as the library's only verifier. Shared by script/DeployBridge.s.sol and the
/// Foundry tests, so both build the same thing.
abstract contract BridgeDeployer {
    /// Executor gas for one lzReceive of a bridge message (a credit through the Vault: ~110k).
    uint128 internal constant DEFAULT_LZ_RECEIVE_GAS = 250_000;

    struct LocalLz {
        EndpointV2 endpoint;
        SimpleMessageLib lib;
    }

    /// EndpointV2 (`eid`, owned by the sender) with SimpleMessageLib as the default send and
    /// receive library towards `remoteEid`; only `verifier` may verify packets (address(0): anyone).
    function _deployLocalLz(uint32 eid, uint32 remoteEid, address self, address verifier)
        internal
        returns (LocalLz memory l)
    {
        l.endpoint = new EndpointV2(eid, self);
        l.lib = new SimpleMessageLib(address(l.endpoint), self);
        l.endpoint.registerLibrary(address(l.lib));
        l.endpoint.setDefaultSendLibrary(remoteEid, address(l.lib));
        l.endpoint.setDefaultReceiveLibrary(remoteEid, address(l.lib), 0);
        if (verifier != address(0)) l.lib.setWhitelistCaller(verifier);
    }

    /// Type-3 options: the executor's gas for lzReceive (ExecutorOptions of lz-evm-messagelib-v2).
    function _lzReceiveOption(uint128 gas) internal pure returns (bytes memory) {
        return abi.encodePacked(
            uint16(3), ExecutorOptions.WORKER_ID, uint16(17), ExecutorOptions.OPTION_TYPE_LZRECEIVE, gas
        );
    }

    function _enforce(EnforcedOptionParam[] memory p, uint32 eid, uint16 kind, uint128 gas) internal pure {
        p[0] = EnforcedOptionParam(eid, kind, _lzReceiveOption(gas));
    }

    /// The home end: the bridge, wired into the Vault when the sender owns the Vault. Under
    /// governance the timelock owns it: wiring (Vault.setBridge) is then a proposal, filed by
    /// the deploy flow (shared/chain/governed.py), and `_handOver` offers the bridge to the timelock.
    function _deployHomeBridge(address endpoint, Vault vault, address owner) internal returns (CollateralBridge b) {
        b = new CollateralBridge(endpoint, vault, owner);
        if (vault.owner() == owner) vault.setBridge(address(b));
    }

    /// Once wired, a governed Vault's bridge is offered to the Vault's owner (the timelock); its
    /// acceptOwnership() rides in the same proposal as Vault.setBridge.
    function _handOver(CollateralBridge b, Vault vault, address deployer) internal {
        address owner = vault.owner();
        if (owner != deployer) b.transferOwnership(owner);
    }

    /// Fund the home bridge's reserve from the sender's tokens.
    function _fundReserve(CollateralBridge b, uint256 amount) internal {
        if (amount == 0) return;
        b.token().approve(address(b), amount);
        b.fundReserve(amount);
    }

    function _deployDepositor(address endpoint, IERC20 token, uint32 homeEid, address owner)
        internal
        returns (CollateralDepositor d)
    {
        d = new CollateralDepositor(endpoint, token, homeEid, owner);
    }

    /// Home side of the wiring: the remote depositor as peer, the executor gas of RELEASE.
    function _wireHome(CollateralBridge b, uint32 remoteEid, address depositor, uint8 decimals, uint128 gas)
        internal
    {
        b.setRemote(remoteEid, bytes32(uint256(uint160(depositor))), decimals);
        EnforcedOptionParam[] memory p = new EnforcedOptionParam[](1);
        _enforce(p, remoteEid, BridgeMessages.RELEASE, gas);
        b.setEnforcedOptions(p);
    }

    /// Remote side of the wiring: the home bridge as peer, the executor gas of CREDIT.
    function _wireRemote(CollateralDepositor d, uint32 homeEid, address bridge, uint128 gas) internal {
        d.setPeer(homeEid, bytes32(uint256(uint160(bridge))));
        EnforcedOptionParam[] memory p = new EnforcedOptionParam[](1);
        _enforce(p, homeEid, BridgeMessages.CREDIT, gas);
        d.setEnforcedOptions(p);
    }
}
