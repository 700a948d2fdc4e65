// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {ReentrancyGuardTransient} from "@openzeppelin/contracts/utils/ReentrancyGuardTransient.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IPositionManager} from "../interfaces/IPerpEx.sol";
import {VirtualAMM} from "./VirtualAMM.sol";
import {Vault} from "./Vault.sol";
import {PositionNFT} from "./PositionNFT.sol";
import {PriceOracle} from "../oracle/PriceOracle.sol";

/// @title PositionManager: opens, closes and liquidates isolated-margin perpetual positions.
/// @notice Trades execute on the market's VirtualAMM (entry and exit prices come from its quote);
/// margin health is measured at the oracle index price:
///   cumulativeFunding = checkpoint + fundingPerSecond * (now - lastFundingTime)
///   margin            = collateral + (index - entryPrice) * size / 1e18 (negated for shorts)
///                       - size * (cumulativeFunding - entryFundingIndex) / 1e18 (negated for shorts)
///   maintenanceMargin = size * index / 1e18 * maintenanceMarginRatio / 1e18
///   liquidatable      <=> the position exists and margin < maintenanceMargin
/// (Solidity integer division truncates toward zero.) Every amount is WAD; collateral lives in the
/// Vault; each position is a soulbound PositionNFT.
///
/// Safety rules (no one may end a block richer while the oracle price stands still):
///  - a close whose equity (collateral + PnL - funding) is negative reverts: only a liquidation
///    may realize a loss beyond the margin, and liquidation eligibility is measured at the index,
///    so moving the vAMM alone never makes a position liquidatable;
///  - the vAMM limits the mark's move per trade and per block, across every trade in the block;
///  - when mark and index diverge by more than `maxSpread`, opening and removing margin must pass
///    at both prices (the worse one decides);
///  - a liquidation unwinds only what fits inside the vAMM's limits and never pushes the mark past
///    index -/+ maxSpread (the rest stays for the next call), and after it no open or close trades
///    happen in that market in the same block (no sandwich around it);
///  - funding accrues per second at the rate the last update set, so holding a position for s
///    seconds pays s seconds of funding whenever it is settled; an update only sets the next rate;
///  - positions below the market's `minNotional` cannot be opened (a keeper's reward must cover
///    its gas); `deadline` and `maxFee` bound a trade against delay and fee changes.
contract PositionManager is IPositionManager, Ownable2Step, ReentrancyGuardTransient {
    using SafeCast for uint256;
    using SafeCast for int256;

    uint256 internal constant WAD = 1e18;
    uint256 public constant MAX_MARKETS = 256;
    uint256 public constant MAX_LEVERAGE_CAP = 1000e18;

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

    // ---------------------------------------------------------------- events (in addition to IPositionManagerEvents)
    event RiskParamsUpdated(
        bytes32 indexed marketId, uint256 maxLeverage, uint256 maintenanceMarginRatio, uint256 liquidationFeeRatio
    );
    event SafetyParamsUpdated(
        bytes32 indexed marketId, uint256 minNotional, uint256 liquidationRewardShare, uint256 maxSpread
    );
    event FundingParamsUpdated(bytes32 indexed marketId, uint256 fundingInterval, uint256 maxFundingRate);

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
        // slot 2: funding checkpoint (the index at lastFundingTime) and the rate set then
        int128 cumulativeFundingIndex;
        int64 fundingRate;
        uint64 lastFundingTime;
        // slot 3: the index's speed since lastFundingTime, and the mark accumulator reading then
        // (kept modulo 2^112: TWAPs use wrapping differences, like Uniswap v2)
        int128 fundingPerSecond;
        uint112 markCumulativeSnapshot;
        // slot 4
        uint96 minNotional;
        uint64 liquidationRewardShare; // the keeper's share of the penalty (WAD)
        uint64 maxSpread; // WAD
        // slot 5, 6: open positions by side (the pool's exposure); `live` is set to 1 when the
        // market is added, so no later write to these slots is a zero -> non-zero one
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
        int128 entryFundingIndex;
        uint128 collateral;
        // slot 2
        uint96 leverage;
        uint40 openedAt;
        uint40 openedBlock;
        uint8 marketIndex;
        bool isLong;
    }

    /// The outcome of one liquidation call (memory, to keep the stack small).
    struct Liquidation {
        uint256 closed; // base size unwound
        uint256 exitQuote;
        uint256 notionalClosed;
        int256 pnl;
        int256 funding;
        int256 equity;
        uint256 reward;
        uint256 insuranceFee;
        uint256 rest; // equity left after the penalty (refund, or collateral kept)
        int256 cum;
        uint256 index;
        uint256 remaining; // base size left open
        address owner;
        bytes32 marketId;
    }

    Vault public immutable vault;
    PriceOracle public immutable oracle;
    PositionNFT public immutable nft;

    mapping(uint256 => MarketData) internal _markets;
    bytes32[] internal _marketIds;
    mapping(bytes32 => uint256) internal _marketIndexPlusOne;
    mapping(uint256 => PositionData) internal _positions;

    constructor(Vault vault_, PriceOracle oracle_, PositionNFT nft_) Ownable(msg.sender) {
        if (address(vault_) == address(0) || address(oracle_) == address(0) || address(nft_) == address(0)) {
            revert ZeroAddress();
        }
        vault = vault_;
        oracle = oracle_;
        nft = nft_;
    }

    // ================================================================ admin

    /// @notice Register a market. Its oracle feed must already be set in the PriceOracle and the
    /// vAMM must have been deployed for this pair and this PositionManager. The safety parameters
    /// start at minNotional 0 (none), liquidationRewardShare 50 % and maxSpread 5 %
    /// (see setSafetyParams).
    function addMarket(
        string calldata pair,
        VirtualAMM vamm,
        uint256 maxLeverage,
        uint256 maintenanceMarginRatio,
        uint256 liquidationFeeRatio,
        uint256 fundingInterval,
        uint256 maxFundingRate
    ) external onlyOwner returns (bytes32 marketId) {
        marketId = keccak256(bytes(pair));
        if (_marketIndexPlusOne[marketId] != 0) revert MarketExists(marketId);
        uint256 idx = _marketIds.length;
        if (idx >= MAX_MARKETS) revert TooManyMarkets();
        if (address(vamm) == address(0) || vamm.positionManager() != address(this) || vamm.marketId() != marketId) {
            revert InvalidMarketConfig();
        }
        address feed = oracle.feedOf(marketId);
        if (feed == address(0)) revert InvalidMarketConfig();
        oracle.getIndexPrice(marketId); // the feed answers
        _validateRisk(maxLeverage, maintenanceMarginRatio, liquidationFeeRatio);
        _validateFunding(fundingInterval, maxFundingRate);

        (uint256 markCum,) = vamm.currentPriceCumulative();
        MarketData storage m = _markets[idx];
        m.vamm = vamm;
        m.fundingInterval = uint32(fundingInterval);
        m.maxFundingRate = uint64(maxFundingRate);
        m.maxLeverage = uint96(maxLeverage);
        m.maintenanceMarginRatio = uint64(maintenanceMarginRatio);
        m.liquidationFeeRatio = uint64(liquidationFeeRatio);
        m.lastFundingTime = uint64(block.timestamp);
        m.markCumulativeSnapshot = uint112(markCum);
        m.liquidationRewardShare = 0.5e18;
        m.maxSpread = 0.05e18;
        m.longLive = 1;
        m.shortLive = 1;
        _marketIds.push(marketId);
        _marketIndexPlusOne[marketId] = idx + 1;
        emit MarketAdded(marketId, pair, address(vamm), feed);
        emit RiskParamsUpdated(marketId, maxLeverage, maintenanceMarginRatio, liquidationFeeRatio);
        emit FundingParamsUpdated(marketId, fundingInterval, maxFundingRate);
        emit SafetyParamsUpdated(marketId, 0, 0.5e18, 0.05e18);
    }

    function setRiskParams(
        bytes32 marketId,
        uint256 maxLeverage,
        uint256 maintenanceMarginRatio,
        uint256 liquidationFeeRatio
    ) external onlyOwner {
        MarketData storage m = _markets[_indexOf(marketId)];
        _validateRisk(maxLeverage, maintenanceMarginRatio, liquidationFeeRatio);
        m.maxLeverage = uint96(maxLeverage);
        m.maintenanceMarginRatio = uint64(maintenanceMarginRatio);
        m.liquidationFeeRatio = uint64(liquidationFeeRatio);
        emit RiskParamsUpdated(marketId, maxLeverage, maintenanceMarginRatio, liquidationFeeRatio);
    }

    /// @notice minNotional: the smallest position that may be opened (quote, WAD); set it so that
    /// the keeper's share of the penalty on it covers a liquidation's gas. liquidationRewardShare:
    /// the keeper's part of the liquidation penalty, the rest goes to the insurance fund.
    /// maxSpread: the mark/index divergence past which margin checks use the worse price, and the
    /// farthest a liquidation may push the mark past the index.
    function setSafetyParams(bytes32 marketId, uint256 minNotional, uint256 liquidationRewardShare, uint256 maxSpread)
        external
        onlyOwner
    {
        MarketData storage m = _markets[_indexOf(marketId)];
        if (minNotional > type(uint96).max || liquidationRewardShare > WAD || maxSpread == 0 || maxSpread > 0.5e18) {
            revert InvalidMarketConfig();
        }
        m.minNotional = uint96(minNotional);
        m.liquidationRewardShare = uint64(liquidationRewardShare);
        m.maxSpread = uint64(maxSpread);
        emit SafetyParamsUpdated(marketId, minNotional, liquidationRewardShare, maxSpread);
    }

    /// @notice A new interval or cap applies from the next funding update; the speed set by the
    /// last update keeps accruing until then.
    function setFundingParams(bytes32 marketId, uint256 fundingInterval, uint256 maxFundingRate) external onlyOwner {
        MarketData storage m = _markets[_indexOf(marketId)];
        _validateFunding(fundingInterval, maxFundingRate);
        m.fundingInterval = uint32(fundingInterval);
        m.maxFundingRate = uint64(maxFundingRate);
        emit FundingParamsUpdated(marketId, fundingInterval, maxFundingRate);
    }

    /// @notice A paused market refuses openPosition and removeMargin; closing, adding margin,
    /// liquidation and funding updates keep working so that risk can always be reduced.
    function setMarketPaused(bytes32 marketId, bool paused) external onlyOwner {
        _markets[_indexOf(marketId)].paused = paused;
        emit MarketPaused(marketId, paused);
    }

    // ================================================================ trading

    /// @inheritdoc IPositionManager
    /// @dev Without a fee bound or deadline (see the 7-argument overload).
    function openPosition(bytes32 marketId, bool isLong, uint256 collateral, uint256 leverage, uint256 priceLimit)
        external
        nonReentrant
        returns (uint256 tokenId)
    {
        return _open(marketId, isLong, collateral, leverage, priceLimit, type(uint256).max, type(uint256).max);
    }

    /// @inheritdoc IPositionManager
    /// @dev `priceLimit` bounds the vAMM entry price (longs: entry <= limit, shorts: entry >= limit;
    /// 0 = no bound), `maxFee` the trading fee, `deadline` the block timestamp. The trading fee is
    /// charged from free collateral on top of `collateral`.
    function openPosition(
        bytes32 marketId,
        bool isLong,
        uint256 collateral,
        uint256 leverage,
        uint256 priceLimit,
        uint256 maxFee,
        uint256 deadline
    ) external nonReentrant returns (uint256 tokenId) {
        return _open(marketId, isLong, collateral, leverage, priceLimit, maxFee, deadline);
    }

    function _open(
        bytes32 marketId,
        bool isLong,
        uint256 collateral,
        uint256 leverage,
        uint256 priceLimit,
        uint256 maxFee,
        uint256 deadline
    ) internal returns (uint256 tokenId) {
        if (block.timestamp > deadline) revert DeadlineExpired(deadline);
        uint256 idx = _indexOf(marketId);
        MarketData storage m = _markets[idx];
        if (m.paused) revert MarketIsPaused(marketId);
        if (collateral == 0) revert ZeroAmount();
        if (leverage < WAD || leverage > m.maxLeverage) revert InvalidLeverage(leverage, m.maxLeverage);

        uint256 notional = collateral * leverage / WAD;
        if (notional < m.minNotional) revert PositionTooSmall(notional, m.minNotional);
        PositionData memory p;
        uint256 fee;
        {
            uint256 size;
            (size, fee) = m.vamm.swap(isLong, true, notional);
            if (fee > maxFee) revert FeeTooHigh(fee, maxFee);
            _checkPriceLimit(isLong, notional * WAD / size, priceLimit);
            p = PositionData({
                size: size.toUint128(),
                notional: notional.toUint128(),
                entryFundingIndex: _cumulativeNow(m).toInt128(),
                collateral: collateral.toUint128(),
                leverage: leverage.toUint96(),
                openedAt: uint40(block.timestamp),
                openedBlock: uint40(block.number),
                marketIndex: uint8(idx),
                isLong: isLong
            });
        }
        _checkOpenHealth(m, marketId, p);
        vault.openPosition(msg.sender, collateral, fee, notional);
        _addExposure(m, p);
        tokenId = nft.mint(msg.sender, marketId);
        _positions[tokenId] = p;
        _emitOpened(tokenId, marketId, p, fee);
    }

    function _emitOpened(uint256 tokenId, bytes32 marketId, PositionData memory p, uint256 fee) internal {
        emit PositionOpened(
            tokenId,
            msg.sender,
            marketId,
            p.isLong,
            p.collateral,
            p.leverage,
            p.size,
            p.notional,
            uint256(p.notional) * WAD / p.size,
            fee,
            p.entryFundingIndex
        );
    }

    /// @inheritdoc IPositionManager
    /// @dev Settles pending funding into the collateral (MarginChanged with delta = -funding).
    function addMargin(uint256 tokenId, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        PositionData storage p = _positions[tokenId];
        address owner = _ownedPosition(p, tokenId);
        bytes32 marketId = _marketIds[p.marketIndex];
        vault.lockMargin(owner, amount);
        uint256 c = uint256(p.collateral) + amount;
        p.collateral = c.toUint128();
        emit MarginChanged(tokenId, owner, marketId, int256(amount), c, p.entryFundingIndex);
        _settleFunding(p, tokenId, owner, marketId);
    }

    /// @inheritdoc IPositionManager
    /// @dev After removal the position must still meet the initial margin at the index price:
    /// collateral + min(unrealized PnL, 0) >= size * index / maxLeverage; when mark and index
    /// diverge past maxSpread, at the mark price too.
    function removeMargin(uint256 tokenId, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        PositionData storage p = _positions[tokenId];
        address owner = _ownedPosition(p, tokenId);
        uint256 idx = p.marketIndex;
        bytes32 marketId = _marketIds[idx];
        MarketData storage m = _markets[idx];
        if (m.paused) revert MarketIsPaused(marketId);
        _settleFunding(p, tokenId, owner, marketId);

        uint256 c = p.collateral;
        if (amount > c) revert InsufficientCollateral(c, amount);
        c -= amount;
        {
            PositionData memory pm = p;
            uint256 index = oracle.getIndexPrice(marketId);
            _checkInitialMargin(pm, c, index, m.maxLeverage);
            uint256 mark = m.vamm.markPrice();
            if (_diverged(mark, index, m.maxSpread)) _checkInitialMargin(pm, c, mark, m.maxLeverage);
        }
        p.collateral = uint128(c);
        vault.releaseMargin(owner, amount);
        emit MarginChanged(tokenId, owner, marketId, -int256(amount), c, p.entryFundingIndex);
    }

    /// @inheritdoc IPositionManager
    /// @dev Without a fee bound or deadline (see the 4-argument overload).
    function closePosition(uint256 tokenId, uint256 priceLimit) external nonReentrant {
        _close(tokenId, priceLimit, type(uint256).max, type(uint256).max);
    }

    /// @inheritdoc IPositionManager
    /// @dev `priceLimit` bounds the vAMM exit price (closing a long sells: exit >= limit; closing a
    /// short buys: exit <= limit; 0 = no bound), `maxFee` the trading fee, `deadline` the block
    /// timestamp. The fee is taken from what the position returns. Reverts with NegativeEquity
    /// when the position cannot pay its loss and funding: only a liquidation may realize that.
    function closePosition(uint256 tokenId, uint256 priceLimit, uint256 maxFee, uint256 deadline)
        external
        nonReentrant
    {
        _close(tokenId, priceLimit, maxFee, deadline);
    }

    function _close(uint256 tokenId, uint256 priceLimit, uint256 maxFee, uint256 deadline) internal {
        if (block.timestamp > deadline) revert DeadlineExpired(deadline);
        PositionData memory p = _positions[tokenId];
        if (p.size == 0) revert PositionNotFound(tokenId);
        address owner = nft.ownerOf(tokenId);
        if (msg.sender != owner) revert NotPositionOwner(tokenId, msg.sender);
        MarketData storage m = _markets[p.marketIndex];
        (uint256 exitQuote, uint256 fee) = m.vamm.swap(p.isLong, false, p.size);
        if (fee > maxFee) revert FeeTooHigh(fee, maxFee);
        _checkPriceLimit(!p.isLong, exitQuote * WAD / p.size, priceLimit);
        _settleClose(tokenId, owner, m, p, exitQuote, fee);
    }

    function _settleClose(
        uint256 tokenId,
        address owner,
        MarketData storage m,
        PositionData memory p,
        uint256 exitQuote,
        uint256 fee
    ) internal {
        int256 pnl = _realizedPnl(p, exitQuote, p.notional);
        int256 funding = _pendingFunding(p, _cumulativeNow(m));
        int256 equity = int256(uint256(p.collateral)) + pnl - funding;
        if (equity < 0) revert NegativeEquity(tokenId, equity);
        if (fee > uint256(equity)) fee = uint256(equity);
        uint256 payout = uint256(equity) - fee;
        vault.settlePosition(Vault.Settlement(owner, p.collateral, equity, payout, 0, fee, address(0), 0, p.notional));
        _removeExposure(m, p.isLong, p.size, p.notional);
        bytes32 marketId = _marketIds[p.marketIndex];
        delete _positions[tokenId];
        nft.burn(tokenId, marketId);
        emit PositionClosed(tokenId, owner, marketId, exitQuote * WAD / p.size, pnl, funding, payout, fee);
    }

    // ================================================================ liquidation

    /// @inheritdoc IPositionManager
    function liquidatePosition(uint256 tokenId) external nonReentrant {
        _liquidate(tokenId, 0);
    }

    /// @inheritdoc IPositionManager
    /// @dev Unwinds the position on the vAMM (no trading fee) as far as the vAMM's per-trade and
    /// per-block limits allow without pushing the mark past index * (1 -/+ maxSpread); what does
    /// not fit stays open for a later call (PositionReduced), never less than minNotional. The
    /// penalty, liquidationFeeRatio x unwound size x index, is split: liquidationRewardShare to the
    /// caller's free collateral (covered by the insurance fund when the position cannot pay it),
    /// the rest to the insurance fund as far as the position's equity allows. On a full
    /// liquidation what is left goes to the owner; a shortfall is covered by the insurance fund
    /// (then recorded as bad debt). After it, no open/close trades in this market in this block.
    /// `priceLimit` bounds the unwind price (a long sold: price >= limit; a short bought back:
    /// price <= limit; 0 = none).
    function liquidatePosition(uint256 tokenId, uint256 priceLimit) external nonReentrant {
        _liquidate(tokenId, priceLimit);
    }

    function _liquidate(uint256 tokenId, uint256 priceLimit) internal {
        PositionData memory p = _positions[tokenId];
        if (p.size == 0) revert PositionNotFound(tokenId);
        MarketData storage m = _markets[p.marketIndex];
        Liquidation memory l;
        l.marketId = _marketIds[p.marketIndex];
        l.cum = _cumulativeNow(m);
        l.index = oracle.getIndexPrice(l.marketId);
        {
            (int256 margin, uint256 mm) = _health(p, l.cum, l.index, m.maintenanceMarginRatio);
            if (margin >= int256(mm)) revert NotLiquidatable(tokenId, margin, mm);
        }
        _unwind(m, p, l, tokenId, priceLimit);
        _settleLiquidation(m, p, l);
        l.owner = nft.ownerOf(tokenId);
        l.remaining = p.size - l.closed;
        {
            Vault.Settlement memory st = Vault.Settlement(
                l.owner, p.collateral, l.equity, 0, 0, l.insuranceFee, msg.sender, l.reward, l.notionalClosed.toUint128()
            );
            if (l.remaining == 0) st.payout = l.rest;
            else st.remaining = l.rest;
            vault.settlePosition(st);
        }
        _removeExposure(m, p.isLong, l.closed, l.notionalClosed);
        if (l.remaining == 0) {
            delete _positions[tokenId];
            nft.burn(tokenId, l.marketId);
            _emitLiquidated(tokenId, l);
        } else {
            _emitLiquidated(tokenId, l);
            PositionData storage ps = _positions[tokenId];
            uint256 notional = p.notional - l.notionalClosed;
            ps.size = uint128(l.remaining);
            ps.notional = uint128(notional);
            ps.collateral = l.rest.toUint128();
            ps.entryFundingIndex = int128(l.cum);
            emit PositionReduced(tokenId, l.owner, l.marketId, l.remaining, notional, l.rest, l.cum);
        }
    }

    function _emitLiquidated(uint256 tokenId, Liquidation memory l) internal {
        emit PositionLiquidated(
            tokenId,
            l.owner,
            l.marketId,
            msg.sender,
            l.exitQuote * WAD / l.closed,
            l.pnl,
            l.reward,
            l.remaining == 0 ? l.rest : 0,
            l.equity < 0 ? uint256(-l.equity) : 0,
            l.closed,
            l.remaining,
            l.funding,
            l.insuranceFee
        );
    }

    /// Unwind as much of the position as the bounds allow (all of it when they do).
    function _unwind(MarketData storage m, PositionData memory p, Liquidation memory l, uint256 tokenId, uint256 limit)
        internal
    {
        uint256 spread = m.maxSpread;
        uint256 bound = p.isLong ? l.index * (WAD - spread) / WAD : l.index * (WAD + spread) / WAD;
        uint256 minRemaining = (uint256(m.minNotional) * WAD + l.index - 1) / l.index;
        (l.closed, l.exitQuote) = m.vamm.liquidate(p.isLong, p.size, bound, minRemaining);
        if (l.closed == 0) revert LiquidationOutOfBounds(tokenId, m.vamm.markPrice(), bound);
        _checkPriceLimit(!p.isLong, l.exitQuote * WAD / l.closed, limit);
        l.notionalClosed = l.closed == p.size ? p.notional : uint256(p.notional) * l.closed / p.size;
    }

    /// PnL, funding, equity and the penalty split of an unwind.
    function _settleLiquidation(MarketData storage m, PositionData memory p, Liquidation memory l) internal view {
        l.pnl = _realizedPnl(p, l.exitQuote, l.notionalClosed);
        l.funding = _pendingFunding(p, l.cum);
        l.equity = int256(uint256(p.collateral)) + l.pnl - l.funding;
        uint256 penalty = l.closed * l.index / WAD * m.liquidationFeeRatio / WAD;
        l.reward = penalty * m.liquidationRewardShare / WAD;
        if (l.equity >= int256(penalty)) {
            l.rest = uint256(l.equity) - penalty;
            l.insuranceFee = penalty - l.reward;
        } else if (l.equity >= int256(l.reward)) {
            l.insuranceFee = uint256(l.equity) - l.reward;
        }
    }

    /// @inheritdoc IPositionManager
    function isPositionLiquidatable(uint256 tokenId) external view returns (bool) {
        return _healthOf(tokenId).liquidatable;
    }

    /// @notice Health of one position (see getPositionsHealth).
    function getPositionHealth(uint256 tokenId) external view returns (PositionHealth memory) {
        return _healthOf(tokenId);
    }

    /// @inheritdoc IPositionManager
    /// @dev Never reverts for unknown ids (exists = false). If a market's oracle cannot answer
    /// (stale or invalid), its positions report indexPrice = 0 and liquidatable = false.
    function getPositionsHealth(uint256[] calldata tokenIds) external view returns (PositionHealth[] memory out) {
        uint256 n = _marketIds.length;
        uint256[] memory prices = new uint256[](n);
        bool[] memory loaded = new bool[](n);
        out = new PositionHealth[](tokenIds.length);
        for (uint256 i; i < tokenIds.length; ++i) {
            PositionData memory p = _positions[tokenIds[i]];
            if (p.size == 0) {
                out[i].tokenId = tokenIds[i];
                continue;
            }
            uint256 idx = p.marketIndex;
            if (!loaded[idx]) {
                prices[idx] = _tryIndexPrice(_marketIds[idx]);
                loaded[idx] = true;
            }
            out[i] = _healthWith(tokenIds[i], p, prices[idx]);
        }
    }

    // ================================================================ funding

    /// @inheritdoc IPositionManager
    /// @dev Callable by anyone once `fundingInterval` has passed since the last update. Funding
    /// accrues per second at the speed the previous update set (so a late update charges all the
    /// time that passed, and nothing jumps at the update); this checkpoints the index and sets the
    /// rate for what follows:
    ///   rate = (markTwap - indexTwap) / indexTwap * fundingInterval / 1 day, clamped to
    ///   +-maxFundingRate; fundingPerSecond = rate * indexTwap / fundingInterval.
    /// markTwap is the vAMM's over [lastFundingTime, now]; indexTwap comes from the feed's round
    /// history over the same window.
    function updateFundingRate(bytes32 marketId) external nonReentrant {
        MarketData storage m = _markets[_indexOf(marketId)];
        uint256 last = m.lastFundingTime;
        uint256 interval = m.fundingInterval;
        if (block.timestamp < last + interval) revert FundingTooEarly(marketId, last + interval);
        int256 cum = _cumulativeNow(m);
        (uint256 markCum,) = m.vamm.currentPriceCumulative();
        (int256 rate, uint256 markTwap, uint256 indexTwap) = _fundingRate(m, marketId, markCum, last);
        int256 speed = rate * int256(indexTwap) / int256(WAD) / int256(interval);
        m.cumulativeFundingIndex = cum.toInt128();
        m.fundingRate = int64(rate);
        m.lastFundingTime = uint64(block.timestamp);
        m.fundingPerSecond = speed.toInt128();
        m.markCumulativeSnapshot = uint112(markCum);
        emit FundingRateUpdated(marketId, rate, cum, markTwap, indexTwap, block.timestamp, speed);
    }

    /// @notice What updateFundingRate would set now (it may still be too early to call it).
    function previewFundingRate(bytes32 marketId)
        external
        view
        returns (int256 rate, uint256 markTwap, uint256 indexTwap)
    {
        MarketData storage m = _markets[_indexOf(marketId)];
        if (block.timestamp == m.lastFundingTime) {
            return (m.fundingRate, m.vamm.markPrice(), oracle.getIndexPrice(marketId));
        }
        (uint256 markCum,) = m.vamm.currentPriceCumulative();
        return _fundingRate(m, marketId, markCum, m.lastFundingTime);
    }

    function lastFundingTime(bytes32 marketId) external view returns (uint256) {
        return _markets[_indexOf(marketId)].lastFundingTime;
    }

    function nextFundingTime(bytes32 marketId) external view returns (uint256) {
        MarketData storage m = _markets[_indexOf(marketId)];
        return uint256(m.lastFundingTime) + m.fundingInterval;
    }

    /// @notice The rate the last update set (per funding interval, WAD; positive: longs pay).
    function fundingRate(bytes32 marketId) external view returns (int256) {
        return _markets[_indexOf(marketId)].fundingRate;
    }

    /// @notice How fast the cumulative funding index moves now (quote per unit of base per second).
    function fundingPerSecond(bytes32 marketId) external view returns (int256) {
        return _markets[_indexOf(marketId)].fundingPerSecond;
    }

    /// @notice The cumulative funding index now (it moves every second).
    function cumulativeFundingIndex(bytes32 marketId) external view returns (int256) {
        return _cumulativeNow(_markets[_indexOf(marketId)]);
    }

    // ================================================================ views

    /// @inheritdoc IPositionManager
    /// @dev A zeroed struct (size == 0) when the position does not exist (never opened or closed).
    function getPosition(uint256 tokenId) external view returns (Position memory pos) {
        PositionData memory p = _positions[tokenId];
        if (p.size == 0) return pos;
        pos = Position({
            marketId: _marketIds[p.marketIndex],
            isLong: p.isLong,
            collateral: p.collateral,
            leverage: p.leverage,
            size: p.size,
            notional: p.notional,
            entryPrice: uint256(p.notional) * WAD / p.size,
            entryFundingIndex: p.entryFundingIndex,
            openedAt: p.openedAt,
            openedBlock: p.openedBlock
        });
    }

    /// @notice Owner of an open position (address(0) when it does not exist).
    function positionOwner(uint256 tokenId) external view returns (address) {
        if (_positions[tokenId].size == 0) return address(0);
        return nft.ownerOf(tokenId);
    }

    /// @notice Funding owed by the position since its last settlement (positive: it pays).
    function pendingFunding(uint256 tokenId) external view returns (int256) {
        PositionData memory p = _positions[tokenId];
        if (p.size == 0) return 0;
        return _pendingFunding(p, _cumulativeNow(_markets[p.marketIndex]));
    }

    /// @notice Unrealized PnL at the oracle index price.
    function unrealizedPnl(uint256 tokenId) external view returns (int256) {
        PositionData memory p = _positions[tokenId];
        if (p.size == 0) return 0;
        return _unrealizedPnl(p, oracle.getIndexPrice(_marketIds[p.marketIndex]));
    }

    /// @notice Quote openPosition on the current vAMM state.
    function quoteOpen(bytes32 marketId, bool isLong, uint256 collateral, uint256 leverage)
        external
        view
        returns (uint256 size, uint256 entryPrice, uint256 fee, uint256 priceImpact)
    {
        VirtualAMM vamm = _markets[_indexOf(marketId)].vamm;
        return vamm.quoteOpen(isLong, collateral * leverage / WAD);
    }

    /// @notice Quote closePosition on the current vAMM state (PnL before funding and fee).
    function quoteClose(uint256 tokenId)
        external
        view
        returns (uint256 exitQuote, uint256 exitPrice, uint256 fee, int256 realizedPnl)
    {
        PositionData memory p = _positions[tokenId];
        if (p.size == 0) revert PositionNotFound(tokenId);
        (exitQuote, exitPrice, fee,) = _markets[p.marketIndex].vamm.quoteClose(p.isLong, p.size);
        realizedPnl = _realizedPnl(p, exitQuote, p.notional);
    }

    /// @inheritdoc IPositionManager
    function getMarket(bytes32 marketId) external view returns (MarketConfig memory) {
        MarketData storage m = _markets[_indexOf(marketId)];
        return MarketConfig({
            vamm: address(m.vamm),
            oracleFeed: oracle.feedOf(marketId),
            maxLeverage: m.maxLeverage,
            maintenanceMarginRatio: m.maintenanceMarginRatio,
            liquidationFeeRatio: m.liquidationFeeRatio,
            fundingInterval: m.fundingInterval,
            maxFundingRate: m.maxFundingRate,
            paused: m.paused,
            minNotional: m.minNotional,
            liquidationRewardShare: m.liquidationRewardShare,
            maxSpread: m.maxSpread
        });
    }

    /// @notice One market's prices and funding now, in one call: index (0 when the oracle cannot
    /// answer), mark, the cumulative funding index, and open positions' base size by side.
    function marketState(bytes32 marketId)
        external
        view
        returns (uint256 index, uint256 mark, int256 cumulativeFunding, uint256 longSize, uint256 shortSize)
    {
        MarketData storage m = _markets[_indexOf(marketId)];
        return (_tryIndexPrice(marketId), m.vamm.markPrice(), _cumulativeNow(m), m.longSize, m.shortSize);
    }

    /// @notice Open positions' aggregate unrealized PnL if all were closed on the vAMM now
    /// (positive: traders are in profit and the pool owes it; fees and funding not included).
    /// The vault prices liquidity shares with it.
    function traderPnl() external view returns (int256 pnl) {
        uint256 n = _marketIds.length;
        for (uint256 i; i < n; ++i) {
            MarketData storage m = _markets[i];
            int256 net = int256(uint256(m.longSize)) - int256(uint256(m.shortSize));
            int256 value = m.vamm.unwindValue(net);
            if (value == type(int256).min) return type(int128).min; // shorts cannot be bought back
            pnl += value - (int256(uint256(m.longNotional)) - int256(uint256(m.shortNotional)));
        }
    }

    function marketIds() external view returns (bytes32[] memory) {
        return _marketIds;
    }

    function marketCount() external view returns (uint256) {
        return _marketIds.length;
    }

    function isMarket(bytes32 marketId) external view returns (bool) {
        return _marketIndexPlusOne[marketId] != 0;
    }

    function indexPrice(bytes32 marketId) external view returns (uint256) {
        _indexOf(marketId);
        return oracle.getIndexPrice(marketId);
    }

    function markPrice(bytes32 marketId) external view returns (uint256) {
        return _markets[_indexOf(marketId)].vamm.markPrice();
    }

    // ================================================================ internals

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

    function _cumulativeNow(MarketData storage m) internal view returns (int256) {
        return int256(m.cumulativeFundingIndex)
            + int256(m.fundingPerSecond) * int256(block.timestamp - uint256(m.lastFundingTime));
    }

    /// Move pending funding into the collateral and reset the entry index.
    function _settleFunding(PositionData storage p, uint256 tokenId, address owner, bytes32 marketId) internal {
        int256 cum = _cumulativeNow(_markets[p.marketIndex]);
        if (cum == p.entryFundingIndex) return;
        PositionData memory pm = p;
        int256 funding = _pendingFunding(pm, cum);
        p.entryFundingIndex = int128(cum);
        if (funding == 0) return;
        int256 c = int256(uint256(pm.collateral)) - funding;
        if (c < 0) revert InsufficientCollateral(pm.collateral, uint256(funding));
        p.collateral = uint256(c).toUint128();
        vault.settleFunding(funding);
        emit MarginChanged(tokenId, owner, marketId, -funding, uint256(c), cum);
    }

    /// A new position must not be liquidatable at the index, nor at the mark when the two diverge.
    function _checkOpenHealth(MarketData storage m, bytes32 marketId, PositionData memory p) internal view {
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

    /// collateral + min(unrealized PnL at `price`, 0) >= size * price / maxLeverage
    function _checkInitialMargin(PositionData memory p, uint256 c, uint256 price, uint256 maxLeverage)
        internal
        pure
    {
        int256 pnl = _unrealizedPnl(p, price);
        int256 margin = int256(c) + (pnl < 0 ? pnl : int256(0));
        uint256 required = uint256(p.size) * price / WAD * WAD / maxLeverage;
        if (margin < int256(required)) revert InsufficientMargin(margin, required);
    }

    function _diverged(uint256 mark, uint256 index, uint256 spread) internal pure returns (bool) {
        uint256 d = mark > index ? mark - index : index - mark;
        return d * WAD > index * spread;
    }

    function _addExposure(MarketData storage m, PositionData memory p) internal {
        if (p.isLong) {
            m.longSize = (m.longSize + uint256(p.size)).toUint112();
            m.longNotional = (m.longNotional + uint256(p.notional)).toUint112();
        } else {
            m.shortSize = (m.shortSize + uint256(p.size)).toUint112();
            m.shortNotional = (m.shortNotional + uint256(p.notional)).toUint112();
        }
    }

    function _removeExposure(MarketData storage m, bool isLong, uint256 size, uint256 notional) internal {
        // every position's size and notional went into these sums: never below zero
        if (isLong) {
            m.longSize = uint112(m.longSize - size);
            m.longNotional = uint112(m.longNotional - notional);
        } else {
            m.shortSize = uint112(m.shortSize - size);
            m.shortNotional = uint112(m.shortNotional - notional);
        }
    }

    function _checkPriceLimit(bool buying, uint256 price, uint256 limit) internal pure {
        if (limit == 0) return;
        if (buying ? price > limit : price < limit) revert SlippageExceeded(price, limit);
    }

    function _realizedPnl(PositionData memory p, uint256 exitQuote, uint256 notional) internal pure returns (int256) {
        int256 d = int256(exitQuote) - int256(notional);
        return p.isLong ? d : -d;
    }

    function _unrealizedPnl(PositionData memory p, uint256 index) internal pure returns (int256) {
        uint256 entryPrice = uint256(p.notional) * WAD / p.size;
        int256 pnl = (int256(index) - int256(entryPrice)) * int256(uint256(p.size)) / int256(WAD);
        return p.isLong ? pnl : -pnl;
    }

    function _pendingFunding(PositionData memory p, int256 cum) internal pure returns (int256) {
        int256 f = int256(uint256(p.size)) * (cum - p.entryFundingIndex) / int256(WAD);
        return p.isLong ? f : -f;
    }

    function _health(PositionData memory p, int256 cum, uint256 index, uint256 mmr)
        internal
        pure
        returns (int256 margin, uint256 maintenanceMargin)
    {
        margin = int256(uint256(p.collateral)) + _unrealizedPnl(p, index) - _pendingFunding(p, cum);
        maintenanceMargin = uint256(p.size) * index / WAD * mmr / WAD;
    }

    function _healthOf(uint256 tokenId) internal view returns (PositionHealth memory h) {
        PositionData memory p = _positions[tokenId];
        if (p.size == 0) {
            h.tokenId = tokenId;
            return h;
        }
        return _healthWith(tokenId, p, _tryIndexPrice(_marketIds[p.marketIndex]));
    }

    function _healthWith(uint256 tokenId, PositionData memory p, uint256 index)
        internal
        view
        returns (PositionHealth memory h)
    {
        MarketData storage m = _markets[p.marketIndex];
        int256 cum = _cumulativeNow(m);
        h.tokenId = tokenId;
        h.exists = true;
        h.indexPrice = index;
        if (index == 0) {
            h.margin = int256(uint256(p.collateral)) - _pendingFunding(p, cum);
            return h;
        }
        (h.margin, h.maintenanceMargin) = _health(p, cum, index, m.maintenanceMarginRatio);
        h.liquidatable = h.margin < int256(h.maintenanceMargin);
    }

    function _tryIndexPrice(bytes32 marketId) internal view returns (uint256) {
        try oracle.getIndexPrice(marketId) returns (uint256 p) {
            return p;
        } catch {
            return 0;
        }
    }

    /// The rate from the premium of the mark TWAP (vAMM accumulator since the last update) over
    /// the index TWAP (the feed's rounds since then).
    function _fundingRate(MarketData storage m, bytes32 marketId, uint256 markCum, uint256 from)
        internal
        view
        returns (int256 rate, uint256 markTwap, uint256 indexTwap)
    {
        uint256 dt = block.timestamp - from;
        unchecked {
            markTwap = uint256(uint112(uint112(markCum) - m.markCumulativeSnapshot)) / dt;
        }
        indexTwap = oracle.getTwap(marketId, from);
        if (indexTwap == 0) return (0, markTwap, indexTwap);
        rate = (int256(markTwap) - int256(indexTwap)) * int256(WAD) * int256(uint256(m.fundingInterval))
            / (int256(indexTwap) * 1 days);
        int256 cap = int256(uint256(m.maxFundingRate));
        if (rate > cap) rate = cap;
        else if (rate < -cap) rate = -cap;
    }

    function _validateRisk(uint256 maxLeverage, uint256 mmr, uint256 liqFee) internal pure {
        if (maxLeverage < WAD || maxLeverage > MAX_LEVERAGE_CAP) revert InvalidMarketConfig();
        // maintenance margin must sit below the initial margin at max leverage
        if (mmr == 0 || mmr * maxLeverage >= WAD * WAD) revert InvalidMarketConfig();
        if (liqFee > mmr) revert InvalidMarketConfig();
    }

    function _validateFunding(uint256 interval, uint256 maxRate) internal pure {
        if (interval < 60 || interval > 30 days) revert InvalidMarketConfig();
        if (maxRate == 0 || maxRate > WAD) revert InvalidMarketConfig();
    }
}
