// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {IERC20Metadata} from "@openzeppelin/contracts/token/ERC20/extensions/IERC20Metadata.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {MessagingFee, MessagingReceipt} from "@layerzerolabs/oapp-evm/contracts/oapp/OApp.sol";
import {OrderedBridgeApp} from "./OrderedBridgeApp.sol";
import {BridgeMessages} from "./BridgeMessages.sol";

/// @title CollateralDepositor: the remote-chain end of the cross-chain collateral bridge
/// (docs/bridge.md).
/// @notice `deposit` locks tokens here and sends a CREDIT message to the home chain's
/// CollateralBridge, which credits the trader's free collateral in the Vault. A RELEASE message
/// from the home bridge (a trader's withdrawal there, already debited) pays locked tokens out.
/// Only what was received is credited (the balance difference: fee-on-transfer tokens credit
/// less), and a release never pays more than is locked. A release the token refuses (a
/// blacklisted recipient, a paused token) does not block the path: it is kept for the recipient,
/// who claims it to any address (`claimDeferred`).
contract CollateralDepositor is OrderedBridgeApp, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    error InvalidDecimals(uint8 decimals);
    error AmountTooLarge(uint256 credit);
    error InsufficientLocked(uint256 locked, uint256 amount);
    error NothingToClaim();

    event DepositSent(
        bytes32 indexed guid,
        address indexed from,
        address indexed account,
        uint256 amount,
        uint256 credit,
        uint64 nonce
    );
    event Released(bytes32 indexed guid, address indexed recipient, uint256 amount, uint64 nonce);
    event ReleaseDeferred(bytes32 indexed guid, address indexed recipient, uint256 amount, uint64 nonce);
    event DeferredClaimed(address indexed recipient, address to, uint256 amount);

    /// The largest credit one deposit may carry: the Vault keeps its totals in uint128.
    uint256 public constant MAX_CREDIT = type(uint128).max;

    IERC20 public immutable token;
    uint32 public immutable homeEid;
    /// home units per token unit: 10**(18 - decimals)
    uint256 public immutable scale;

    /// Tokens locked for credits on the home chain (token units).
    uint256 public totalLocked;
    /// Releases the token refused, per recipient (token units), and their sum.
    mapping(address => uint256) public deferred;
    uint256 public totalDeferred;

    constructor(address endpoint_, IERC20 token_, uint32 homeEid_, address owner_)
        OrderedBridgeApp(endpoint_, owner_)
    {
        if (address(token_) == address(0)) revert ZeroAddress();
        uint8 d = IERC20Metadata(address(token_)).decimals();
        if (d > 18) revert InvalidDecimals(d);
        token = token_;
        homeEid = homeEid_;
        scale = 10 ** (18 - d);
    }

    /// @notice Lock `amount` (token units) and credit `account`'s free collateral on the home
    /// chain with it (in WAD). Pay the LayerZero fee in msg.value (see `quoteDeposit`).
    function deposit(uint256 amount, address account, bytes calldata extraOptions)
        external
        payable
        nonReentrant
        returns (MessagingReceipt memory receipt)
    {
        if (amount == 0) revert ZeroAmount();
        if (account == address(0)) revert ZeroAddress();
        uint256 before = token.balanceOf(address(this));
        token.safeTransferFrom(msg.sender, address(this), amount);
        uint256 received = token.balanceOf(address(this)) - before;
        if (received == 0) revert ZeroAmount();
        uint256 credit = received * scale;
        if (credit > MAX_CREDIT) revert AmountTooLarge(credit);
        totalLocked += received;
        receipt = _lzSend(
            homeEid,
            BridgeMessages.encode(BridgeMessages.CREDIT, account, credit),
            combineOptions(homeEid, BridgeMessages.CREDIT, extraOptions),
            MessagingFee(msg.value, 0),
            payable(msg.sender)
        );
        emit DepositSent(receipt.guid, msg.sender, account, received, credit, receipt.nonce);
    }

    /// @notice The LayerZero fee of `deposit`.
    function quoteDeposit(uint256 amount, address account, bytes calldata extraOptions)
        external
        view
        returns (MessagingFee memory)
    {
        bytes memory message = BridgeMessages.encode(BridgeMessages.CREDIT, account, amount * scale);
        return _quote(homeEid, message, combineOptions(homeEid, BridgeMessages.CREDIT, extraOptions), false);
    }

    /// @notice Pay out what a refused release kept for the caller, to `to`.
    function claimDeferred(address to) external nonReentrant {
        if (to == address(0)) revert ZeroAddress();
        uint256 amount = deferred[msg.sender];
        if (amount == 0) revert NothingToClaim();
        deferred[msg.sender] = 0;
        totalDeferred -= amount;
        token.safeTransfer(to, amount);
        emit DeferredClaimed(msg.sender, to, amount);
    }

    function _handle(uint32 srcEid, uint64 nonce, bytes32 guid, uint16 kind, address recipient, uint256 amount)
        internal
        override
    {
        if (kind != BridgeMessages.RELEASE || srcEid != homeEid) revert UnexpectedMessage(kind);
        // The home bridge only sends multiples of `scale` and never more than it credited.
        uint256 tokens = amount / scale;
        uint256 locked = totalLocked;
        if (tokens > locked) revert InsufficientLocked(locked, tokens);
        totalLocked = locked - tokens;
        if (token.trySafeTransfer(recipient, tokens)) {
            emit Released(guid, recipient, tokens, nonce);
        } else {
            deferred[recipient] += tokens;
            totalDeferred += tokens;
            emit ReleaseDeferred(guid, recipient, tokens, nonce);
        }
    }
}
