// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";

/// @title Vault: holds all collateral (vUSDT) and keeps its books in four buckets.
/// @notice Invariant: collateralToken.balanceOf(vault) == totalFree + totalLocked + insuranceFund + liquidity
///  - free:      traders' withdrawable balances (deposits, payouts, keeper rewards)
///  - locked:    margin locked in open positions (sum of every position's collateral)
///  - insurance: trading fees in; covers shortfalls of bankrupt positions and keeper rewards
///  - liquidity: the counterparty pool. Pays traders' profits and funding receipts, receives their
///               losses and funding payments. Open interest is limited to
///               liquidity * maxUtilization.
/// Shortfalls that the insurance fund cannot cover are recorded in `badDebt` (a loss of the pool).
contract Vault is Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint256 internal constant WAD = 1e18;

    error ZeroAmount();
    error ZeroAddress();
    error OnlyPositionManager();
    error PositionManagerAlreadySet();
    error InsufficientFreeCollateral(uint256 available, uint256 requested);
    error InsufficientLiquidity(uint256 available, uint256 requested);
    error InsufficientInsurance(uint256 available, uint256 requested);
    error UtilizationExceeded(uint256 openInterest, uint256 limit);
    error InvalidUtilization();
    error InvalidSettlement();
    error AmountTooLarge();

    event Deposited(address indexed account, address indexed from, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event LiquidityAdded(address indexed from, uint256 amount);
    event LiquidityRemoved(address indexed to, uint256 amount);
    event InsuranceFunded(address indexed from, uint256 amount);
    event InsuranceWithdrawn(address indexed to, uint256 amount);
    event InsuranceUsed(uint256 amount);
    event BadDebtRecorded(uint256 amount, uint256 totalBadDebt);
    event MaxUtilizationSet(uint256 maxUtilization);
    event PositionManagerSet(address positionManager);

    IERC20 public immutable collateralToken;

    // slot 0
    address public positionManager;
    uint64 public maxUtilization; // WAD, e.g. 0.8e18
    // slot 1
    uint128 public totalFree;
    uint128 public totalLocked;
    // slot 2: read together by the utilization check
    uint128 public liquidity;
    uint128 public openInterest; // sum of open positions' entry notional
    // slot 3
    uint128 public insuranceFund;
    uint128 public badDebt; // shortfalls not covered by the insurance fund

    mapping(address => uint256) public freeCollateral;

    modifier onlyPositionManager() {
        if (msg.sender != positionManager) revert OnlyPositionManager();
        _;
    }

    constructor(IERC20 token, uint256 maxUtilization_) Ownable(msg.sender) {
        if (address(token) == address(0)) revert ZeroAddress();
        collateralToken = token;
        _setMaxUtilization(maxUtilization_);
    }

    // ---------------------------------------------------------------- admin

    /// @notice One-time wiring to the PositionManager.
    function setPositionManager(address pm) external onlyOwner {
        if (pm == address(0)) revert ZeroAddress();
        if (positionManager != address(0)) revert PositionManagerAlreadySet();
        positionManager = pm;
        emit PositionManagerSet(pm);
    }

    function setMaxUtilization(uint256 maxUtilization_) external onlyOwner {
        _setMaxUtilization(maxUtilization_);
    }

    function removeLiquidity(uint256 amount, address to) external onlyOwner nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (to == address(0)) revert ZeroAddress();
        uint256 liq = liquidity;
        if (amount > liq) revert InsufficientLiquidity(liq, amount);
        liq -= amount;
        uint256 limit = liq * maxUtilization / WAD;
        if (openInterest > limit) revert UtilizationExceeded(openInterest, limit);
        liquidity = uint128(liq);
        collateralToken.safeTransfer(to, amount);
        emit LiquidityRemoved(to, amount);
    }

    function withdrawInsurance(uint256 amount, address to) external onlyOwner nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (to == address(0)) revert ZeroAddress();
        uint256 ins = insuranceFund;
        if (amount > ins) revert InsufficientInsurance(ins, amount);
        insuranceFund = uint128(ins - amount);
        collateralToken.safeTransfer(to, amount);
        emit InsuranceWithdrawn(to, amount);
    }

    // ---------------------------------------------------------------- users

    function deposit(uint256 amount) external nonReentrant {
        _deposit(msg.sender, amount);
    }

    function depositFor(address account, uint256 amount) external nonReentrant {
        if (account == address(0)) revert ZeroAddress();
        _deposit(account, amount);
    }

    /// @notice Withdraw free (unlocked) collateral.
    function withdraw(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        uint256 bal = freeCollateral[msg.sender];
        if (amount > bal) revert InsufficientFreeCollateral(bal, amount);
        freeCollateral[msg.sender] = bal - amount;
        totalFree -= uint128(amount);
        collateralToken.safeTransfer(msg.sender, amount);
        emit Withdrawn(msg.sender, amount);
    }

    /// @notice Add counterparty liquidity (no shares: a contribution to the pool).
    function addLiquidity(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        _pull(amount);
        liquidity += uint128(amount);
        emit LiquidityAdded(msg.sender, amount);
    }

    function fundInsurance(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        _pull(amount);
        insuranceFund += uint128(amount);
        emit InsuranceFunded(msg.sender, amount);
    }

    // ---------------------------------------------------------------- PositionManager hooks

    /// @notice Open: move `collateral` from free to locked, `fee` from free to insurance, add
    /// `notional` to open interest (bounded by utilization).
    function openPosition(address trader, uint256 collateral, uint256 fee, uint256 notional)
        external
        onlyPositionManager
    {
        uint256 cost = collateral + fee;
        uint256 bal = freeCollateral[trader];
        if (cost > bal) revert InsufficientFreeCollateral(bal, cost);
        freeCollateral[trader] = bal - cost;
        totalFree -= uint128(cost);
        totalLocked += uint128(collateral);
        insuranceFund += uint128(fee);
        uint256 oi = openInterest + notional;
        uint256 limit = uint256(liquidity) * maxUtilization / WAD;
        if (oi > limit) revert UtilizationExceeded(oi, limit);
        if (oi > type(uint128).max) revert AmountTooLarge();
        openInterest = uint128(oi);
    }

    /// @notice Add margin: free -> locked.
    function lockMargin(address trader, uint256 amount) external onlyPositionManager {
        uint256 bal = freeCollateral[trader];
        if (amount > bal) revert InsufficientFreeCollateral(bal, amount);
        freeCollateral[trader] = bal - amount;
        totalFree -= uint128(amount);
        totalLocked += uint128(amount);
    }

    /// @notice Remove margin: locked -> free.
    function releaseMargin(address trader, uint256 amount) external onlyPositionManager {
        totalLocked -= uint128(amount);
        totalFree += uint128(amount);
        freeCollateral[trader] += amount;
    }

    /// @notice Settle a funding payment of a position into its margin: positive = the position
    /// pays (locked -> liquidity), negative = it receives (liquidity -> locked).
    function settleFunding(int256 payment) external onlyPositionManager {
        if (payment >= 0) {
            totalLocked -= uint128(uint256(payment));
            liquidity += uint128(uint256(payment));
        } else {
            uint256 amt = uint256(-payment);
            _payFromPool(amt);
            totalLocked += uint128(amt);
        }
    }

    /// @notice What closing or liquidating a position settles.
    /// owner receives `payout` and keeper `reward` into free collateral, `fee` goes to insurance,
    /// `collateral` (the position's locked margin) is released, `equity` = collateral + realized
    /// PnL - funding (may be negative), `notional` (entry notional) leaves the open interest.
    struct Settlement {
        address owner;
        uint128 collateral;
        int256 equity;
        uint256 payout;
        uint256 fee;
        address keeper;
        uint256 reward;
        uint128 notional;
    }

    /// @notice Settle a closed or liquidated position.
    /// @return shortfall what the position could not pay (covered by insurance where possible)
    function settlePosition(Settlement calldata st) external onlyPositionManager returns (uint256 shortfall) {
        uint256 collateral = st.collateral;
        uint256 payout = st.payout;
        uint256 reward = st.reward;
        uint256 fee = st.fee;
        int256 equity = st.equity;
        uint256 paid = payout + reward + fee;
        // The pool is the counterparty: it is owed `collateral - equity` and receives what is left
        // of the collateral after paying owner, keeper and fee (`collateral - paid`). The
        // difference `paid - equity` is the shortfall; the owner is paid only when there is none.
        int256 s = int256(paid) - equity;
        if (s < 0 || (payout != 0 && s != 0)) revert InvalidSettlement();
        shortfall = uint256(s);

        totalLocked -= uint128(collateral);
        openInterest -= st.notional;
        if (payout != 0) freeCollateral[st.owner] += payout;
        if (reward != 0) freeCollateral[st.keeper] += reward;
        totalFree += uint128(payout + reward);
        if (fee != 0) insuranceFund += uint128(fee);
        if (shortfall != 0) _coverShortfall(shortfall);
        if (collateral >= paid) {
            liquidity += uint128(collateral - paid);
        } else {
            _payFromPool(paid - collateral);
        }
    }

    // ---------------------------------------------------------------- views

    /// @notice Sum of all buckets; equals the token balance (see the contract invariant).
    function totalAccounted() external view returns (uint256) {
        return uint256(totalFree) + totalLocked + insuranceFund + liquidity;
    }

    function utilization() external view returns (uint256) {
        uint256 liq = liquidity;
        return liq == 0 ? (openInterest == 0 ? 0 : type(uint256).max) : uint256(openInterest) * WAD / liq;
    }

    function availableOpenInterest() external view returns (uint256) {
        uint256 limit = uint256(liquidity) * maxUtilization / WAD;
        return limit > openInterest ? limit - openInterest : 0;
    }

    // ---------------------------------------------------------------- internals

    function _deposit(address account, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        _pull(amount);
        freeCollateral[account] += amount;
        totalFree += uint128(amount);
        emit Deposited(account, msg.sender, amount);
    }

    function _pull(uint256 amount) private {
        if (amount > type(uint128).max) revert AmountTooLarge();
        collateralToken.safeTransferFrom(msg.sender, address(this), amount);
    }

    /// Pool pays `amount`; when the pool is short the insurance fund steps in.
    function _payFromPool(uint256 amount) private {
        uint256 liq = liquidity;
        if (amount <= liq) {
            liquidity = uint128(liq - amount);
            return;
        }
        uint256 rest = amount - liq;
        uint256 ins = insuranceFund;
        if (rest > ins) revert InsufficientLiquidity(liq + ins, amount);
        liquidity = 0;
        insuranceFund = uint128(ins - rest);
        emit InsuranceUsed(rest);
    }

    /// The insurance fund makes the pool whole for a shortfall; what it cannot cover is bad debt.
    function _coverShortfall(uint256 shortfall) private {
        uint256 ins = insuranceFund;
        uint256 covered = shortfall <= ins ? shortfall : ins;
        if (covered != 0) {
            insuranceFund = uint128(ins - covered);
            liquidity += uint128(covered);
            emit InsuranceUsed(covered);
        }
        uint256 uncovered = shortfall - covered;
        if (uncovered != 0) {
            uint256 total = badDebt + uncovered;
            badDebt = uint128(total);
            emit BadDebtRecorded(uncovered, total);
        }
    }

    function _setMaxUtilization(uint256 u) private {
        if (u == 0 || u > 10e18) revert InvalidUtilization(); // fits uint64
        maxUtilization = uint64(u);
        emit MaxUtilizationSet(u);
    }
}
