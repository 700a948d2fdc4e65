// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {SafeERC20} from "@openzeppelin/contracts/token/ERC20/utils/SafeERC20.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @notice The PositionManager's view of open positions' aggregate unrealized PnL at the vAMM
/// (positive: traders are in profit, the pool owes it).
interface IPoolExposure {
    function traderPnl() external view returns (int256);
}

/// @title Vault: holds all collateral (vUSDT) and keeps its books in five buckets.
/// @notice Invariant: collateralToken.balanceOf(vault) ==
///   totalFree + totalLocked + insuranceFund + liquidity + fundingBuffer
///  - free:      traders' withdrawable balances (deposits, payouts, keeper rewards)
///  - locked:    margin locked in open positions (sum of every position's collateral)
///  - insurance: trading fees and the insurance part of liquidation penalties in; covers
///               shortfalls of bankrupt positions and keeper rewards they cannot pay
///  - liquidity: the counterparty pool. Pays traders' profits, receives their losses. The pool's
///               risk, the net exposure (per market |long notional - short notional|, summed),
///               is limited to liquidity * maxUtilization when positions open.
///  - fundingBuffer (signed): funding is zero-sum between traders (PositionManagerBase); what
///               payers settle waits here for the receivers, who may settle first (the buffer
///               then lends from the pool's tokens: the pool keeps that much back).
/// Shortfalls that the insurance fund cannot cover are recorded in `badDebt` (a loss of the pool).
///
/// The pool belongs to its liquidity providers: `addLiquidity` mints shares, `removeLiquidity`
/// burns them for their part of the pool, limited by what the pool must keep for open positions
/// (the utilization limit and what it owes traders in unrealized profit now). Shares are priced
/// so that moving the vAMM cannot make them cheaper to get or dearer to redeem: a deposit at the
/// pool's book value plus what traders owe it in unrealized losses, a withdrawal at book value
/// less what it owes traders in unrealized profit.
/// The owner cannot take the pool; the insurance fund leaves only through a withdrawal announced
/// INSURANCE_WITHDRAWAL_DELAY in advance.
///
/// Cross-chain collateral (docs/bridge.md): the bridge credits traders with `depositFor`, paying
/// with real tokens of its own reserve like any depositor, and takes a trader's free collateral
/// to send it to another chain with `withdrawForBridge`, which only the bridge set once by the
/// owner may call. Both keep the invariant: tokens move with every credit and debit.
contract Vault is Ownable2Step, ReentrancyGuardTransient {
    using SafeERC20 for IERC20;

    uint256 internal constant WAD = 1e18;

    error ZeroAmount();
    error ZeroAddress();
    error OnlyPositionManager();
    error PositionManagerAlreadySet();
    error OnlyBridge();
    error BridgeAlreadySet();
    error InsufficientFreeCollateral(uint256 available, uint256 requested);
    error InsufficientLiquidity(uint256 available, uint256 requested);
    error InsufficientInsurance(uint256 available, uint256 requested);
    error UtilizationExceeded(uint256 netExposure, uint256 limit);
    error InvalidUtilization();
    error InvalidSettlement();
    error AmountTooLarge();
    error InsufficientShares(uint256 available, uint256 requested);
    error ZeroShares();
    error WithdrawalNotAnnounced(uint256 amount, address to);
    error WithdrawalTooEarly(uint256 executableAt);

    event Deposited(address indexed account, address indexed from, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);
    event LiquidityAdded(address indexed from, uint256 amount, uint256 shares);
    event LiquidityRemoved(address indexed provider, address indexed to, uint256 amount, uint256 shares);
    event InsuranceFunded(address indexed from, uint256 amount);
    event InsuranceWithdrawalAnnounced(address indexed to, uint256 amount, uint256 executableAt);
    event InsuranceWithdrawn(address indexed to, uint256 amount);
    event InsuranceUsed(uint256 amount);
    event RewardPaid(address indexed to, uint256 amount);
    event BadDebtRecorded(uint256 amount, uint256 totalBadDebt);
    event MaxUtilizationSet(uint256 maxUtilization);
    event PositionManagerSet(address positionManager);
    event BridgeSet(address bridge);

    /// Notice the owner must give before taking money out of the insurance fund.
    uint256 public constant INSURANCE_WITHDRAWAL_DELAY = 7 days;
    /// Virtual shares and assets (OpenZeppelin ERC-4626's offset): the first deposit cannot be
    /// diluted by growing the pool before it.
    uint256 internal constant VIRTUAL_SHARES = 1e6;

    IERC20 public immutable collateralToken;

    // slot 0
    address public positionManager;
    uint64 public maxUtilization; // WAD, e.g. 0.8e18
    // slot 1
    uint128 public totalFree;
    uint128 public totalLocked;
    // slot 2: read together by the utilization check
    uint128 public liquidity;
    uint128 public openInterest; // sum of open positions' entry notional (both sides)
    // slot 3
    uint128 public insuranceFund;
    uint128 public badDebt; // shortfalls not covered by the insurance fund
    // slot 4
    uint128 public netExposure; // per market |long notional - short notional|, summed
    int128 public fundingBuffer; // funding settled by payers and not yet by receivers

    mapping(address => uint256) public freeCollateral;

    // liquidity providers
    uint256 public totalShares;
    mapping(address => uint256) public sharesOf;

    // the announced insurance withdrawal (one at a time)
    struct InsuranceWithdrawal {
        address to;
        uint64 executableAt;
        uint256 amount;
    }

    InsuranceWithdrawal public pendingInsuranceWithdrawal;

    /// The cross-chain collateral bridge (set once; address(0): none). It may debit any trader's
    /// free collateral (`withdrawForBridge`), so it can never be replaced.
    address public bridge;

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

    /// @notice One-time wiring to the cross-chain collateral bridge (docs/bridge.md). Set once:
    /// a bridge can take traders' free collateral, so no owner may swap in another one later.
    function setBridge(address bridge_) external onlyOwner {
        if (bridge_ == address(0)) revert ZeroAddress();
        if (bridge != address(0)) revert BridgeAlreadySet();
        bridge = bridge_;
        emit BridgeSet(bridge_);
    }

    function setMaxUtilization(uint256 maxUtilization_) external onlyOwner {
        _setMaxUtilization(maxUtilization_);
    }

    /// @notice Announce an insurance fund withdrawal; `withdrawInsurance` with the same amount and
    /// recipient may execute it INSURANCE_WITHDRAWAL_DELAY later. Replaces any earlier announcement.
    function announceInsuranceWithdrawal(uint256 amount, address to) external onlyOwner {
        if (amount == 0) revert ZeroAmount();
        if (to == address(0)) revert ZeroAddress();
        uint256 due = block.timestamp + INSURANCE_WITHDRAWAL_DELAY;
        pendingInsuranceWithdrawal = InsuranceWithdrawal(to, uint64(due), amount);
        emit InsuranceWithdrawalAnnounced(to, amount, due);
    }

    /// @notice Execute the announced insurance withdrawal once its delay has passed.
    function withdrawInsurance(uint256 amount, address to) external onlyOwner nonReentrant {
        if (amount == 0) revert ZeroAmount();
        if (to == address(0)) revert ZeroAddress();
        InsuranceWithdrawal memory w = pendingInsuranceWithdrawal;
        if (w.amount != amount || w.to != to) revert WithdrawalNotAnnounced(amount, to);
        if (block.timestamp < w.executableAt) revert WithdrawalTooEarly(w.executableAt);
        uint256 ins = insuranceFund;
        if (amount > ins) revert InsufficientInsurance(ins, amount);
        delete pendingInsuranceWithdrawal;
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
        _withdraw(msg.sender, msg.sender, amount);
    }

    /// @notice The bridge takes `amount` of `account`'s free collateral (the tokens go to the
    /// bridge) to release it on another chain. The bridge calls it only for the trader who asked
    /// it to withdraw (msg.sender of `CollateralBridge.withdrawTo`).
    function withdrawForBridge(address account, uint256 amount) external nonReentrant {
        if (msg.sender != bridge) revert OnlyBridge(); // never address(0)
        _withdraw(account, msg.sender, amount);
    }

    /// @notice Add counterparty liquidity; mints pool shares to the sender, priced at the pool's
    /// liquidity plus what open positions owe it in unrealized losses (never below liquidity).
    function addLiquidity(uint256 amount) external nonReentrant returns (uint256 shares) {
        if (amount == 0) revert ZeroAmount();
        int256 pnl = traderPnl();
        uint256 nav = uint256(liquidity) + (pnl < 0 ? uint256(-pnl) : 0);
        shares = amount * (totalShares + VIRTUAL_SHARES) / (nav + 1);
        if (shares == 0) revert ZeroShares();
        _pull(amount);
        liquidity += uint128(amount);
        totalShares += shares;
        sharesOf[msg.sender] += shares;
        emit LiquidityAdded(msg.sender, amount, shares);
    }

    /// @notice Burn `shares` of the sender's pool shares for their part of the pool, valued at
    /// liquidity less what the pool owes open positions in unrealized profit. The pool must keep
    /// enough for open interest (utilization limit) and for what it owes.
    function removeLiquidity(uint256 shares, address to) external nonReentrant returns (uint256 amount) {
        if (shares == 0) revert ZeroAmount();
        if (to == address(0)) revert ZeroAddress();
        uint256 held = sharesOf[msg.sender];
        if (shares > held) revert InsufficientShares(held, shares);
        uint256 liq = liquidity;
        int256 pnl = traderPnl();
        uint256 owed = pnl > 0 ? uint256(pnl) : 0;
        uint256 nav = liq > owed ? liq - owed : 0;
        amount = shares * (nav + 1) / (totalShares + VIRTUAL_SHARES);
        if (amount == 0) revert ZeroAmount();
        uint256 keep = _required(owed);
        if (liq < amount + keep) revert InsufficientLiquidity(liq > keep ? liq - keep : 0, amount);
        sharesOf[msg.sender] = held - shares;
        totalShares -= shares;
        liquidity = uint128(liq - amount);
        collateralToken.safeTransfer(to, amount);
        emit LiquidityRemoved(msg.sender, to, amount, shares);
    }

    function fundInsurance(uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        _pull(amount);
        insuranceFund += uint128(amount);
        emit InsuranceFunded(msg.sender, amount);
    }

    // ---------------------------------------------------------------- PositionManager hooks

    /// @notice Open: move `collateral` from free to locked, `fee` from free to insurance, add
    /// `notional` to open interest and `exposureDelta` to the net exposure (bounded by
    /// utilization when it grows).
    function openPosition(address trader, uint256 collateral, uint256 fee, uint256 notional, int256 exposureDelta)
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
        if (oi > type(uint128).max) revert AmountTooLarge();
        openInterest = uint128(oi);
        uint256 net = _addExposure(exposureDelta);
        if (exposureDelta > 0) {
            uint256 limit = uint256(liquidity) * maxUtilization / WAD;
            if (net > limit) revert UtilizationExceeded(net, limit);
        }
    }

    /// @notice Pay a keeping reward (e.g. for a funding update) from the insurance fund to `to`'s
    /// free collateral, as far as the fund holds it. Returns what was paid.
    function payReward(address to, uint256 amount) external onlyPositionManager returns (uint256 paid) {
        uint256 ins = insuranceFund;
        paid = amount < ins ? amount : ins;
        if (paid == 0) return 0;
        insuranceFund = uint128(ins - paid);
        freeCollateral[to] += paid;
        totalFree += uint128(paid);
        emit RewardPaid(to, paid);
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
    /// pays (locked -> funding buffer), negative = it receives (funding buffer -> locked).
    function settleFunding(int256 payment) external onlyPositionManager {
        fundingBuffer += int128(payment);
        if (payment >= 0) totalLocked -= uint128(uint256(payment));
        else totalLocked += uint128(uint256(-payment));
        _checkBuffer();
    }

    /// @notice What closing or liquidating (all or part of) a position settles.
    /// owner receives `payout` and keeper `reward` into free collateral, `fee` goes to insurance,
    /// `remaining` stays locked as the collateral of what is left of the position, `collateral`
    /// (the position's locked margin before) is released, `equity` = collateral + realized PnL -
    /// funding (may be negative), `notional` (entry notional of the part closed) leaves the open
    /// interest, `exposureDelta` changes the net exposure, `funding` (positive: paid) goes to the
    /// funding buffer; the pool is the counterparty of the realized PnL only.
    struct Settlement {
        address owner;
        uint128 collateral;
        int256 equity;
        uint256 payout;
        uint256 remaining;
        uint256 fee;
        address keeper;
        uint256 reward;
        uint128 notional;
        int256 exposureDelta;
        int256 funding;
    }

    /// @notice Settle a closed or liquidated position.
    /// @return shortfall what the position could not pay (covered by insurance where possible)
    function settlePosition(Settlement calldata st) external onlyPositionManager returns (uint256 shortfall) {
        uint256 collateral = st.collateral;
        uint256 payout = st.payout;
        uint256 remaining = st.remaining;
        uint256 reward = st.reward;
        uint256 fee = st.fee;
        int256 equity = st.equity;
        uint256 paid = payout + remaining + reward + fee;
        // The pool is the counterparty: it is owed `collateral - equity` and receives what is left
        // of the collateral after paying owner, keeper, fee and what stays locked
        // (`collateral - paid`). The difference `paid - equity` is the shortfall; the owner is paid
        // (or keeps collateral) only when there is none.
        int256 s = int256(paid) - equity;
        if (s < 0 || ((payout != 0 || remaining != 0) && s != 0)) revert InvalidSettlement();
        shortfall = uint256(s);

        totalLocked = uint128(uint256(totalLocked) - collateral + remaining);
        openInterest -= st.notional;
        _addExposure(st.exposureDelta);
        if (payout != 0) freeCollateral[st.owner] += payout;
        if (reward != 0) freeCollateral[st.keeper] += reward;
        totalFree += uint128(payout + reward);
        if (fee != 0) insuranceFund += uint128(fee);
        if (shortfall != 0) _coverShortfall(shortfall);
        int256 funding = st.funding;
        fundingBuffer += int128(funding);
        // what is left of the collateral after the payouts and the funding: the pool's (a loss
        // of the trader), or what the pool pays (a profit)
        int256 pool = int256(collateral) - int256(paid) - funding;
        if (pool >= 0) liquidity += uint128(uint256(pool));
        else _payFromPool(uint256(-pool));
        _checkBuffer();
    }

    // ---------------------------------------------------------------- views

    /// @notice Sum of all buckets; equals the token balance (see the contract invariant).
    function totalAccounted() external view returns (uint256) {
        return uint256(int256(uint256(totalFree) + totalLocked + insuranceFund + liquidity) + fundingBuffer);
    }

    /// @notice Net exposure / liquidity (WAD).
    function utilization() external view returns (uint256) {
        uint256 liq = liquidity;
        return liq == 0 ? (netExposure == 0 ? 0 : type(uint256).max) : uint256(netExposure) * WAD / liq;
    }

    /// @notice Open positions' aggregate unrealized PnL at the vAMM (positive: the pool owes it).
    /// 0 while no PositionManager contract is wired.
    function traderPnl() public view returns (int256) {
        address pm = positionManager;
        if (pm.code.length == 0) return 0;
        return IPoolExposure(pm).traderPnl();
    }

    /// @notice What the pool owes open positions now (their aggregate unrealized profit, or 0).
    function poolLiability() public view returns (uint256) {
        int256 pnl = traderPnl();
        return pnl > 0 ? uint256(pnl) : 0;
    }

    /// @notice Liquidity that may leave the pool now (see removeLiquidity).
    function withdrawableLiquidity() external view returns (uint256) {
        uint256 keep = _required(poolLiability());
        return liquidity > keep ? liquidity - keep : 0;
    }

    /// @notice What `shares` would redeem for now, before the withdrawal limit.
    function previewRemoveLiquidity(uint256 shares) external view returns (uint256) {
        uint256 owed = poolLiability();
        uint256 nav = liquidity > owed ? liquidity - owed : 0;
        return shares * (nav + 1) / (totalShares + VIRTUAL_SHARES);
    }

    function availableOpenInterest() external view returns (uint256) {
        uint256 limit = uint256(liquidity) * maxUtilization / WAD;
        return limit > netExposure ? limit - netExposure : 0;
    }

    // ---------------------------------------------------------------- internals

    /// Liquidity the pool must keep: enough for its net exposure at the utilization limit and
    /// for what it owes open positions, plus what the funding buffer has lent from it.
    function _required(uint256 owed) private view returns (uint256 keep) {
        keep = Math.mulDiv(netExposure, WAD, maxUtilization, Math.Rounding.Ceil);
        if (owed > keep) keep = owed;
        int256 buffer = fundingBuffer;
        if (buffer < 0) keep += uint256(-buffer);
    }

    function _addExposure(int256 delta) private returns (uint256 net) {
        net = uint256(int256(uint256(netExposure)) + delta);
        netExposure = uint128(net);
    }

    /// Receivers settled before payers: the buffer lends from the pool's tokens, never more
    /// than the pool holds.
    function _checkBuffer() private view {
        int256 buffer = fundingBuffer;
        if (buffer < 0 && uint256(-buffer) > liquidity) revert InsufficientLiquidity(liquidity, uint256(-buffer));
    }

    function _withdraw(address account, address to, uint256 amount) private {
        if (amount == 0) revert ZeroAmount();
        uint256 bal = freeCollateral[account];
        if (amount > bal) revert InsufficientFreeCollateral(bal, amount);
        freeCollateral[account] = bal - amount;
        totalFree -= uint128(amount);
        collateralToken.safeTransfer(to, amount);
        emit Withdrawn(account, amount);
    }

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
