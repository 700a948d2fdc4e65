// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {OApp, Origin} from "@layerzerolabs/oapp-evm/contracts/oapp/OApp.sol";
import {OAppOptionsType3} from "@layerzerolabs/oapp-evm/contracts/oapp/libs/OAppOptionsType3.sol";
import {BridgeMessages} from "./BridgeMessages.sol";

/// @title The common half of the bridge's OApp pair: exactly-once, in-order delivery per path.
/// @notice LayerZero's EndpointV2 already refuses a packet nobody verified, a packet from a sender
/// that is not this OApp's peer (`allowInitializePath`, then `OnlyPeer`), and a second delivery of
/// a packet (it deletes the payload hash before calling `lzReceive`). On top of that, each path
/// (source eid, sender) is delivered strictly in nonce order: nonce n only after n-1, so a later
/// message can neither overtake an earlier one nor be replayed, even by a misconfigured endpoint
/// or message library (`receivedNonce` is this contract's own record).
///
/// A delivery whose handler reverts leaves the packet verified and undelivered on the endpoint:
/// the executor retries it, and because the revert rolled everything back, it applies once when
/// it succeeds. Handlers revert only for reasons that pass (an empty reserve), never for ones
/// that would block the path forever.
abstract contract OrderedBridgeApp is OApp, OAppOptionsType3, Ownable2Step {
    error NonceOutOfOrder(uint32 srcEid, uint64 expected, uint64 got);
    error UnexpectedMessage(uint16 kind);
    error ZeroAmount();
    error ZeroAddress();

    /// The last nonce delivered on each path (source eid, sender).
    mapping(uint32 srcEid => mapping(bytes32 sender => uint64 nonce)) public receivedNonce;

    constructor(address endpoint_, address owner_) OApp(endpoint_, owner_) Ownable(owner_) {}

    /// @notice The nonce the executor must deliver next on a path (LayerZero's ordered-delivery
    /// hook, read off-chain by executors).
    function nextNonce(uint32 srcEid, bytes32 sender) public view override returns (uint64) {
        return receivedNonce[srcEid][sender] + 1;
    }

    function _lzReceive(
        Origin calldata origin,
        bytes32 guid,
        bytes calldata message,
        address, /*executor*/
        bytes calldata /*extraData*/
    ) internal override {
        uint64 expected = receivedNonce[origin.srcEid][origin.sender] + 1;
        if (origin.nonce != expected) revert NonceOutOfOrder(origin.srcEid, expected, origin.nonce);
        receivedNonce[origin.srcEid][origin.sender] = expected;
        (uint16 kind, address account, uint256 amount) = BridgeMessages.decode(message);
        _handle(origin.srcEid, origin.nonce, guid, kind, account, amount);
    }

    /// Apply one delivered message (already checked: peer, order, format).
    function _handle(uint32 srcEid, uint64 nonce, bytes32 guid, uint16 kind, address account, uint256 amount)
        internal
        virtual;

    // OApp's Ownable and Ownable2Step meet here: ownership changes take two steps.
    function transferOwnership(address newOwner) public override(Ownable, Ownable2Step) onlyOwner {
        Ownable2Step.transferOwnership(newOwner);
    }

    function _transferOwnership(address newOwner) internal override(Ownable, Ownable2Step) {
        Ownable2Step._transferOwnership(newOwner);
    }
}
