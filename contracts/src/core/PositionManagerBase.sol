// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IPositionManagerEvents} from "../interfaces/IPerpEx.sol";
import {VirtualAMM} from "./VirtualAMM.sol";
import {Vault} from "./Vault.sol";
import {PositionNFT} from "./PositionNFT.sol";
import {PriceOracle} from "../oracle/PriceOracle.sol";

/// @title The PositionManager's storage, errors, events and shared internals.
/// @notice The PositionManager and its modules (PositionManagerAdmin, LiquidationModule, run by
/// delegatecall from the PositionManager) all inherit this contract and declare no storage of
/// their own, so they share one storage layout: the PositionManager's.
///
/// Funding is zero-sum and accrues every second. `fundingPerSecond` (set by each funding update)
/// is what one unit of base on the paying side pays per second when both sides are equal; each
/// second the paying side pays fundingPerSecond x min(long size, short size) in all, pro rata,
/// and the other side receives exactly that, pro rata (payers' share rounded up, receivers'
/// down). Each side has a cumulative index (quote per unit of base paid; falling: received),
/// checkpointed before every change of either side's size. The pool is never a funding
/// counterparty: what payers settle waits in the vault's funding buffer for the receivers.
abstract contract PositionManagerBase is IPositionManagerEvents, Ownable2Step, ReentrancyGuardTransient {
    using SafeCast for uint256;
    using SafeCast for int256;

    uint256 internal constant WAD = 1e18;
    uint256 public constant MAX_MARKETS = 256;
    uint256 public constant MAX_LEVERAGE_CAP = 1000e18;
    /// A risk, safety or funding parameter change on a market with open positions applies only
    /// `paramChangeDelay` after it was scheduled (and within PARAM_CHANGE_WINDOW after that), so
    /// traders can react before tighter rules reach their positions. 2 days by default; a
    /// deployment owned by a governance timelock sets it to 0 (the timelock's delay is the delay).
    uint256 public constant DEFAULT_PARAM_CHANGE_DELAY = 2 days;
    uint256 public constant MAX_PARAM_CHANGE_DELAY = 30 days;
    uint256 public constant PARAM_CHANGE_WINDOW = 7 days;
    /// The most a funding update may pay its caller (from the insurance fund).
    uint256 public constant MAX_FUNDING_REWARD = 100e18;

    // ---------------------------------------------------------------- errors
    error ZeroAddress();
    error ZeroAmount();
    error UnknownMarket(bytes32 marketId);
    error MarketExists(bytes32 marketId);
    error TooManyMarkets();
    error MarketIsPaused(bytes32 marketId);
    error InvalidMarketConfig();
    error InvalidLeverage(uint256 leverage, uint256 maxLeverage);
    error PositionNotFound(uint256 tokenId);
    error NotPositionOwner(uint256 tokenId, address caller);
    error SlippageExceeded(uint256 price, uint256 limit);
    error WouldBeLiquidatable(int256 margin, uint256 maintenanceMargin);
    error NotLiquidatable(uint256 tokenId, int256 margin, uint256 maintenanceMargin);
    error InsufficientCollateral(uint256 collateral, uint256 requested);
    error InsufficientMargin(int256 margin, uint256 required);
    error FundingTooEarly(bytes32 marketId, uint256 nextFundingTime);
    error NegativeEquity(uint256 tokenId, int256 equity);
    error PositionTooSmall(uint256 notional, uint256 minNotional);
    error DeadlineExpired(uint256 deadline);
    error FeeTooHigh(uint256 fee, uint256 maxFee);
    error LiquidationOutOfBounds(uint256 tokenId, uint256 markPrice, uint256 bound);
    error InvalidSize(uint256 size, uint256 positionSize);
    error ParamChangeNotReady(bytes32 changeId, uint256 executableAt);
    error NotGuardian(address caller);

    // ---------------------------------------------------------------- events (in addition to IPositionManagerEvents)
    event RiskParamsUpdated(
        bytes32 indexed marketId, uint256 maxLeverage, uint256 maintenanceMarginRatio, uint256 liquidationFeeRatio
    );
    event SafetyParamsUpdated(
        bytes32 indexed marketId, uint256 minNotional, uint256 liquidationRewardShare, uint256 maxSpread
    );
    event FundingParamsUpdated(bytes32 indexed marketId, uint256 fundingInterval, uint256 maxFundingRate);
    event ParamChangeScheduled(bytes32 indexed marketId, bytes32 indexed changeId, uint256 executableAt);
    event GuardianSet(address guardian);
    event FundingRewardSet(uint256 reward);
    event ParamChangeDelaySet(uint256 delay);

    // ---------------------------------------------------------------- storage
    struct MarketData {
        // slot 0
        VirtualAMM vamm;
        uint32 fundingInterval;
        uint64 maxFundingRate;
        // slot 1
        uint96 maxLeverage;
        uint64 maintenanceMarginRatio;
        uint64 liquidationFeeRatio; // liquidation penalty (fraction of the unwound notional at index)
        bool paused;
        // slot 2: each side's cumulative funding index at lastAccrual
        int128 cumulativeLong;
        int128 cumulativeShort;
        // slot 3
        int128 fundingPerSecond; // positive: longs pay
        uint64 lastAccrual;
        uint64 lastFundingTime;
        // slot 4: the rate the last update set, and the mark accumulator reading then (modulo
        // 2^112: TWAPs use wrapping differences, like Uniswap v2); the funding update's reward
        // (a copy of the protocol-wide setting, kept here because the update writes this slot
        // anyway: reading it costs nothing extra)
        int64 fundingRate;
        uint112 markCumulativeSnapshot;
        uint80 fundingReward;
        // slot 5
        uint96 minNotional;
        uint64 liquidationRewardShare; // the keeper's share of the penalty (WAD)
        uint64 maxSpread; // WAD
        // slot 6, 7: open positions by side; `live` is set to 1 when the market is added, so no
        // later write to these slots is a zero -> non-zero one
        uint112 longSize;
        uint112 longNotional;
        uint32 longLive;
        uint112 shortSize;
        uint112 shortNotional;
        uint32 shortLive;
    }

    struct PositionData {
        // slot 0
        uint128 size;
        uint128 notional;
        // slot 1
        int128 entryFundingIndex; // its side's cumulative funding index at open / last settlement
        uint128 collateral;
        // slot 2
        uint96 leverage;
        uint40 openedAt;
        uint40 openedBlock;
        uint8 marketIndex;
        bool isLong;
    }

    Vault public immutable vault;
    PriceOracle public immutable oracle;
    PositionNFT public immutable nft;

    mapping(uint256 => MarketData) internal _markets;
    bytes32[] internal _marketIds;
    mapping(bytes32 => uint256) internal _marketIndexPlusOne;
    mapping(uint256 => PositionData) internal _positions;
    mapping(bytes32 => uint256) internal _paramChangeEta; // change id => executable at
    address internal _guardian; // may pause markets, nothing else
    uint96 internal _fundingReward; // paid from the insurance fund to whoever updates funding (each market holds a copy)
    uint64 internal _paramChangeDelay;

    constructor(Vault vault_, PriceOracle oracle_, PositionNFT nft_) {
        if (address(vault_) == address(0) || address(oracle_) == address(0) || address(nft_) == address(0)) {
            revert ZeroAddress();
        }
        vault = vault_;
        oracle = oracle_;
        nft = nft_;
    }

    // ---------------------------------------------------------------- markets and positions

    function _indexOf(bytes32 marketId) internal view returns (uint256) {
        uint256 i = _marketIndexPlusOne[marketId];
        if (i == 0) revert UnknownMarket(marketId);
        return i - 1;
    }

    function _ownedPosition(PositionData storage p, uint256 tokenId) internal view returns (address owner) {
        if (p.size == 0) revert PositionNotFound(tokenId);
        owner = nft.ownerOf(tokenId);
        if (msg.sender != owner) revert NotPositionOwner(tokenId, msg.sender);
    }

    function _tryIndexPrice(bytes32 marketId) internal view returns (uint256) {
        try oracle.getIndexPrice(marketId) returns (uint256 p) {
            return p;
        } catch {
            return 0;
        }
    }

    // ---------------------------------------------------------------- funding

    /// Both sides' cumulative funding indexes now (stored + what accrued since lastAccrual at
    /// the current sizes, which have not changed since: every size change checkpoints first).
    function _cumulatives(MarketData storage m) internal view returns (int256 cumLong, int256 cumShort) {
        cumLong = m.cumulativeLong;
        cumShort = m.cumulativeShort;
        int256 speed = m.fundingPerSecond;
        uint256 dt = block.timestamp - m.lastAccrual;
        if (speed == 0 || dt == 0) return (cumLong, cumShort);
        uint256 l = m.longSize;
        uint256 s = m.shortSize;
        if (l == 0 || s == 0) return (cumLong, cumShort);
        uint256 matched = l < s ? l : s;
        uint256 perUnit = (speed > 0 ? uint256(speed) : uint256(-speed)) * dt; // full rate, per unit
        if (speed > 0) {
            cumLong += Math.mulDiv(perUnit, matched, l, Math.Rounding.Ceil).toInt256();
            cumShort -= Math.mulDiv(perUnit, matched, s).toInt256();
        } else {
            cumShort += Math.mulDiv(perUnit, matched, s, Math.Rounding.Ceil).toInt256();
            cumLong -= Math.mulDiv(perUnit, matched, l).toInt256();
        }
    }

    function _cumulative(MarketData storage m, bool isLong) internal view returns (int256) {
        (int256 cumLong, int256 cumShort) = _cumulatives(m);
        return isLong ? cumLong : cumShort;
    }

    /// Checkpoint both indexes (before a size changes, or the speed). Returns them.
    function _accrue(MarketData storage m) internal returns (int256 cumLong, int256 cumShort) {
        (cumLong, cumShort) = _cumulatives(m);
        if (m.fundingPerSecond == 0 || m.lastAccrual == block.timestamp) return (cumLong, cumShort);
        m.cumulativeLong = cumLong.toInt128();
        m.cumulativeShort = cumShort.toInt128();
        m.lastAccrual = uint64(block.timestamp);
    }

    /// Funding the position owes since its last settlement (positive: it pays, rounded up;
    /// negative: it receives, rounded toward zero), so payers always cover receivers.
    function _pendingFunding(PositionData memory p, int256 cum) internal pure returns (int256) {
        int256 owed = int256(uint256(p.size)) * (cum - p.entryFundingIndex);
        if (owed > 0) return (owed + int256(WAD) - 1) / int256(WAD);
        return owed / int256(WAD);
    }

    // ---------------------------------------------------------------- exposure

    /// Add (positive deltas) or remove a position's size and notional on its side; returns the
    /// change of the market's net exposure |longNotional - shortNotional| (the pool's risk).
    function _changeExposure(MarketData storage m, bool isLong, int256 dSize, int256 dNotional)
        internal
        returns (int256 netDelta)
    {
        int256 ln = int256(uint256(m.longNotional));
        int256 sn = int256(uint256(m.shortNotional));
        int256 before = ln > sn ? ln - sn : sn - ln;
        if (isLong) {
            ln += dNotional;
            m.longSize = uint256(int256(uint256(m.longSize)) + dSize).toUint112();
            m.longNotional = uint256(ln).toUint112();
        } else {
            sn += dNotional;
            m.shortSize = uint256(int256(uint256(m.shortSize)) + dSize).toUint112();
            m.shortNotional = uint256(sn).toUint112();
        }
        netDelta = (ln > sn ? ln - sn : sn - ln) - before;
    }

    // ---------------------------------------------------------------- margin math

    function _realizedPnl(bool isLong, uint256 exitQuote, uint256 notional) internal pure returns (int256) {
        int256 d = int256(exitQuote) - int256(notional);
        return isLong ? d : -d;
    }

    function _unrealizedPnl(PositionData memory p, uint256 price) internal pure returns (int256) {
        uint256 entryPrice = uint256(p.notional) * WAD / p.size;
        int256 pnl = (int256(price) - int256(entryPrice)) * int256(uint256(p.size)) / int256(WAD);
        return p.isLong ? pnl : -pnl;
    }

    function _health(PositionData memory p, int256 cum, uint256 index, uint256 mmr)
        internal
        pure
        returns (int256 margin, uint256 maintenanceMargin)
    {
        margin = int256(uint256(p.collateral)) + _unrealizedPnl(p, index) - _pendingFunding(p, cum);
        maintenanceMargin = uint256(p.size) * index / WAD * mmr / WAD;
    }

    function _diverged(uint256 mark, uint256 index, uint256 spread) internal pure returns (bool) {
        uint256 d = mark > index ? mark - index : index - mark;
        return d * WAD > index * spread;
    }

    /// The position must not be liquidatable at the index, nor at the mark when the two diverge
    /// by more than maxSpread.
    function _checkHealthy(MarketData storage m, bytes32 marketId, PositionData memory p) internal view {
        uint256 mmr = m.maintenanceMarginRatio;
        uint256 index = oracle.getIndexPrice(marketId);
        (int256 margin, uint256 mm) = _health(p, p.entryFundingIndex, index, mmr);
        if (margin < int256(mm)) revert WouldBeLiquidatable(margin, mm);
        uint256 mark = m.vamm.markPrice();
        if (_diverged(mark, index, m.maxSpread)) {
            (margin, mm) = _health(p, p.entryFundingIndex, mark, mmr);
            if (margin < int256(mm)) revert WouldBeLiquidatable(margin, mm);
        }
    }

    function _checkPriceLimit(bool buying, uint256 price, uint256 limit) internal pure {
        if (limit == 0) return;
        if (buying ? price > limit : price < limit) revert SlippageExceeded(price, limit);
    }
}
