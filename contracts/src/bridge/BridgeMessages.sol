// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title The bridge's message format (docs/bridge.md).
/// @notice Every message is `abi.encode(uint16 kind, address account, uint256 amount)`, 96 bytes:
///  - CREDIT  (remote -> home): credit `account`'s free collateral in the Vault with `amount`;
///  - RELEASE (home -> remote): release `amount` of the locked token to `account`.
/// `amount` is in home collateral units (18 decimals, WAD) in both directions; the remote side
/// converts from and to its token's decimals. `kind` is also the OApp message type of the
/// enforced executor options (OAppOptionsType3).
library BridgeMessages {
    uint16 internal constant CREDIT = 1;
    uint16 internal constant RELEASE = 2;
    uint256 internal constant LENGTH = 96;

    error MalformedMessage(uint256 length);

    function encode(uint16 kind, address account, uint256 amount) internal pure returns (bytes memory) {
        return abi.encode(kind, account, amount);
    }

    function decode(bytes calldata message) internal pure returns (uint16 kind, address account, uint256 amount) {
        if (message.length != LENGTH) revert MalformedMessage(message.length);
        (kind, account, amount) = abi.decode(message, (uint16, address, uint256));
    }
}
