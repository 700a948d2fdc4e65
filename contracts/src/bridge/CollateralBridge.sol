// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MessagingFee, MessagingReceipt} from "@layerzerolabs/oapp-evm/contracts/oapp/OApp.sol";
import {OrderedBridgeApp} from "./OrderedBridgeApp.sol";
import {BridgeMessages} from "./BridgeMessages.sol";
import {Vault} from "../core/Vault.sol";

/// @title CollateralBridge: the home-chain end of the cross-chain collateral bridge (docs/bridge.md).
/// @notice A CREDIT message from a remote chain's CollateralDepositor (which locked the tokens
/// there) credits the trader's free collateral in the Vault, paid from this contract's reserve
/// of the home collateral token with the Vault's ordinary `depositFor`: the Vault receives real
/// tokens for every credit, so its balance keeps equalling its buckets.
/// `withdrawTo` takes the caller's free collateral back into the reserve (`Vault.withdrawForBridge`)
/// and sends a RELEASE message that frees the same amount of locked tokens on the remote chain.
///
/// Backing: the reserve is home collateral provided up front (at deploy, `fundReserve`) by
/// whoever runs the bridge. A credit swaps remote tokens (locked) for reserve tokens 1:1, a
/// withdrawal swaps them back. `outstanding[eid]` is what this side has credited from `eid` and
/// not sent back: exactly what the remote depositor holds locked for it (once every message in
/// flight is delivered). A withdrawal never asks for more, so a release can never find the
/// remote side short; collateral deposited on the home chain may leave through the bridge only
/// while bridged-in collateral is locked on the other side (first come, first served).
/// A credit the reserve cannot pay reverts (the delivery is retried once the reserve is topped
/// up; nothing is lost, nothing credited twice).
contract CollateralBridge is OrderedBridgeApp, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    error UnknownRemote(uint32 eid);
    error AmountNotRepresentable(uint256 amount, uint256 unit);
    error ExceedsRemoteLiquidity(uint256 outstanding, uint256 amount);
    error ReserveInsufficient(uint256 reserve, uint256 amount);
    error InvalidDecimals(uint8 decimals);
    error UseSetRemote();

    event RemoteSet(uint32 indexed eid, bytes32 peer, uint8 tokenDecimals);
    event DepositCredited(
        bytes32 indexed guid, uint32 indexed srcEid, address indexed account, uint256 amount, uint64 nonce
    );
    event WithdrawalSent(
        bytes32 indexed guid,
        uint32 indexed dstEid,
        address indexed account,
        address recipient,
        uint256 amount,
        uint64 nonce
    );
    event ReserveFunded(address indexed from, uint256 amount);
    event ReserveWithdrawn(address indexed to, uint256 amount);

    Vault public immutable vault;
    IERC20 public immutable token;

    /// Credited from `eid` and not sent back (home units): locked for us on `eid`.
    mapping(uint32 eid => uint256) public outstanding;
    /// The smallest amount `eid`'s token can represent, in home units (10**(18 - its decimals));
    /// 0: not a configured remote.
    mapping(uint32 eid => uint256) public unit;

    constructor(address endpoint_, Vault vault_, address owner_) OrderedBridgeApp(endpoint_, owner_) {
        if (address(vault_) == address(0)) revert ZeroAddress();
        vault = vault_;
        token = vault_.collateralToken();
    }

    // ---------------------------------------------------------------- admin

    /// @notice Wire a remote chain: its CollateralDepositor (`peer`, left-padded address) and its
    /// token's decimals (at most 18, the home collateral's).
    function setRemote(uint32 eid, bytes32 peer, uint8 tokenDecimals) external onlyOwner {
        if (tokenDecimals > 18) revert InvalidDecimals(tokenDecimals);
        unit[eid] = peer == bytes32(0) ? 0 : 10 ** (18 - tokenDecimals);
        _setPeer(eid, peer);
        emit RemoteSet(eid, peer, tokenDecimals);
    }

    /// @notice Peers come with their token's decimals: use `setRemote`.
    function setPeer(uint32, bytes32) public pure override {
        revert UseSetRemote();
    }

    /// @notice Add home collateral to the reserve that pays for credits (anyone).
    function fundReserve(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        token.safeTransferFrom(msg.sender, address(this), amount);
        emit ReserveFunded(msg.sender, amount);
    }

    /// @notice Take reserve out (the owner, who provides it). Credits in flight that no longer
    /// fit wait, undelivered, until the reserve is topped up again.
    function withdrawReserve(uint256 amount, address to) external onlyOwner nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (to == address(0)) revert ZeroAddress();
        token.safeTransfer(to, amount);
        emit ReserveWithdrawn(to, amount);
    }

    // ---------------------------------------------------------------- traders

    /// @notice Send `amount` (WAD) of the caller's free collateral to `recipient` on chain `dstEid`.
    /// Pay the LayerZero fee in msg.value (see `quoteWithdraw`; the excess is refunded).
    function withdrawTo(uint32 dstEid, address recipient, uint256 amount, bytes calldata extraOptions)
        external
        payable
        nonReentrant
        returns (MessagingReceipt memory receipt)
    {
        if (amount == 0) revert ZeroAmount();
        if (recipient == address(0)) revert ZeroAddress();
        uint256 u = unit[dstEid];
        if (u == 0) revert UnknownRemote(dstEid);
        if (amount % u != 0) revert AmountNotRepresentable(amount, u);
        uint256 out = outstanding[dstEid];
        if (amount > out) revert ExceedsRemoteLiquidity(out, amount);
        outstanding[dstEid] = out - amount;
        vault.withdrawForBridge(msg.sender, amount); // the caller's free collateral, into the reserve
        receipt = _lzSend(
            dstEid,
            BridgeMessages.encode(BridgeMessages.RELEASE, recipient, amount),
            combineOptions(dstEid, BridgeMessages.RELEASE, extraOptions),
            MessagingFee(msg.value, 0),
            payable(msg.sender)
        );
        emit WithdrawalSent(receipt.guid, dstEid, msg.sender, recipient, amount, receipt.nonce);
    }

    /// @notice The LayerZero fee of `withdrawTo`.
    function quoteWithdraw(uint32 dstEid, address recipient, uint256 amount, bytes calldata extraOptions)
        external
        view
        returns (MessagingFee memory)
    {
        bytes memory message = BridgeMessages.encode(BridgeMessages.RELEASE, recipient, amount);
        return _quote(dstEid, message, combineOptions(dstEid, BridgeMessages.RELEASE, extraOptions), false);
    }

    /// @notice Home collateral available for credits.
    function reserve() external view returns (uint256) {
        return token.balanceOf(address(this));
    }

    // ---------------------------------------------------------------- delivery

    function _handle(uint32 srcEid, uint64 nonce, bytes32 guid, uint16 kind, address account, uint256 amount)
        internal
        override
    {
        if (kind != BridgeMessages.CREDIT) revert UnexpectedMessage(kind);
        uint256 available = token.balanceOf(address(this));
        if (available < amount) revert ReserveInsufficient(available, amount); // retried later
        outstanding[srcEid] += amount;
        token.forceApprove(address(vault), amount);
        vault.depositFor(account, amount);
        emit DepositCredited(guid, srcEid, account, amount, nonce);
    }
}
