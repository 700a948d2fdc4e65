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
///   margin            = collateral + (index - entryPrice) * size / 1e18 (negated for shorts)
///                       - size * (cumulativeFundingIndex - entryFundingIndex) / 1e18 (negated for shorts)
///   maintenanceMargin = size * index / 1e18 * maintenanceMarginRatio / 1e18
///   liquidatable      <=> the position exists and margin < maintenanceMargin
/// (Solidity integer division truncates toward zero.) Every amount is WAD; collateral lives in the
/// Vault; each position is a soulbound PositionNFT.
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

    // ---------------------------------------------------------------- events (in addition to IPositionManagerEvents)
    event RiskParamsUpdated(
        bytes32 indexed marketId, uint256 maxLeverage, uint256 maintenanceMarginRatio, uint256 liquidationFeeRatio
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
        uint64 liquidationFeeRatio;
        bool paused;
        // slot 2
        int128 cumulativeFundingIndex;
        int64 fundingRate;
        uint64 lastFundingTime;
        // slot 3: mark and index accumulator readings at lastFundingTime, kept modulo 2^112
        // (TWAPs use wrapping differences, like Uniswap v2), packed with a non-zero timestamp
        // so that the first funding update does not pay for a zero -> non-zero write.
        uint112 markCumulativeSnapshot;
        uint112 indexCumulativeSnapshot;
        uint32 snapshotTime;
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
    /// vAMM must have been deployed for this pair and this PositionManager.
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
        _validateRisk(maxLeverage, maintenanceMarginRatio, liquidationFeeRatio);
        _validateFunding(fundingInterval, maxFundingRate);

        (uint256 markCum,) = vamm.currentPriceCumulative();
        (, uint256 indexCum) = oracle.update(marketId);
        _markets[idx] = (
            MarketData({
                vamm: vamm,
                fundingInterval: uint32(fundingInterval),
                maxFundingRate: uint64(maxFundingRate),
                maxLeverage: uint96(maxLeverage),
                maintenanceMarginRatio: uint64(maintenanceMarginRatio),
                liquidationFeeRatio: uint64(liquidationFeeRatio),
                paused: false,
                cumulativeFundingIndex: 0,
                fundingRate: 0,
                lastFundingTime: uint64(block.timestamp),
                markCumulativeSnapshot: uint112(markCum),
                indexCumulativeSnapshot: uint112(indexCum),
                snapshotTime: uint32(block.timestamp)
            })
        );
        _marketIds.push(marketId);
        _marketIndexPlusOne[marketId] = idx + 1;
        emit MarketAdded(marketId, pair, address(vamm), feed);
        emit RiskParamsUpdated(marketId, maxLeverage, maintenanceMarginRatio, liquidationFeeRatio);
        emit FundingParamsUpdated(marketId, fundingInterval, maxFundingRate);
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
    /// @dev `priceLimit` bounds the vAMM entry price (longs: entry <= limit, shorts: entry >= limit;
    /// 0 = no bound). The trading fee is charged from free collateral on top of `collateral`.
    function openPosition(bytes32 marketId, bool isLong, uint256 collateral, uint256 leverage, uint256 priceLimit)
        external
        nonReentrant
        returns (uint256 tokenId)
    {
        uint256 idx = _indexOf(marketId);
        MarketData storage m = _markets[idx];
        if (m.paused) revert MarketIsPaused(marketId);
        if (collateral == 0) revert ZeroAmount();
        if (leverage < WAD || leverage > m.maxLeverage) revert InvalidLeverage(leverage, m.maxLeverage);

        uint256 notional = collateral * leverage / WAD;
        (uint256 size, uint256 fee) = m.vamm.swap(isLong, true, notional, true);
        uint256 entryPrice = notional * WAD / size;
        _checkPriceLimit(isLong, entryPrice, priceLimit);

        PositionData memory p = PositionData({
            size: size.toUint128(),
            notional: notional.toUint128(),
            entryFundingIndex: m.cumulativeFundingIndex,
            collateral: collateral.toUint128(),
            leverage: leverage.toUint96(),
            openedAt: uint40(block.timestamp),
            openedBlock: uint40(block.number),
            marketIndex: uint8(idx),
            isLong: isLong
        });
        {
            (uint256 index,) = oracle.update(marketId);
            (int256 margin, uint256 mm) = _health(p, p.entryFundingIndex, index, m.maintenanceMarginRatio);
            if (margin < int256(mm)) revert WouldBeLiquidatable(margin, mm);
        }
        vault.openPosition(msg.sender, collateral, fee, notional);
        tokenId = nft.mint(msg.sender, marketId);
        _positions[tokenId] = p;
        emit PositionOpened(tokenId, msg.sender, marketId, isLong, collateral, leverage, size, notional, entryPrice, fee);
    }

    /// @inheritdoc IPositionManager
    /// @dev Settles pending funding into the collateral first (MarginChanged with delta = -funding).
    function addMargin(uint256 tokenId, uint256 amount) external nonReentrant {
        if (amount == 0) revert ZeroAmount();
        PositionData storage p = _positions[tokenId];
        address owner = _ownedPosition(p, tokenId);
        bytes32 marketId = _marketIds[p.marketIndex];
        vault.lockMargin(owner, amount);
        uint256 c = uint256(p.collateral) + amount;
        p.collateral = c.toUint128();
        emit MarginChanged(tokenId, owner, marketId, int256(amount), c);
        _settleFunding(p, tokenId, owner, marketId);
    }

    /// @inheritdoc IPositionManager
    /// @dev After removal the position must still meet the initial margin at the index price:
    /// collateral + min(unrealized PnL, 0) >= size * index / maxLeverage.
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
            uint256 index = oracle.getIndexPrice(marketId);
            PositionData memory pm = p;
            int256 pnl = _unrealizedPnl(pm, index);
            int256 margin = int256(c) + (pnl < 0 ? pnl : int256(0));
            uint256 required = uint256(pm.size) * index / WAD * WAD / m.maxLeverage;
            if (margin < int256(required)) revert InsufficientMargin(margin, required);
        }
        p.collateral = uint128(c);
        vault.releaseMargin(owner, amount);
        emit MarginChanged(tokenId, owner, marketId, -int256(amount), c);
    }

    /// @inheritdoc IPositionManager
    /// @dev `priceLimit` bounds the vAMM exit price (closing a long sells: exit >= limit; closing a
    /// short buys: exit <= limit; 0 = no bound). The fee is taken from what the position returns.
    function closePosition(uint256 tokenId, uint256 priceLimit) external nonReentrant {
        PositionData memory p = _positions[tokenId];
        if (p.size == 0) revert PositionNotFound(tokenId);
        address owner = nft.ownerOf(tokenId);
        if (msg.sender != owner) revert NotPositionOwner(tokenId, msg.sender);
        MarketData storage m = _markets[p.marketIndex];
        bytes32 marketId = _marketIds[p.marketIndex];

        (uint256 exitQuote, uint256 fee) = m.vamm.swap(p.isLong, false, p.size, true);
        uint256 exitPrice = exitQuote * WAD / p.size;
        _checkPriceLimit(!p.isLong, exitPrice, priceLimit);

        int256 pnl = _realizedPnl(p, exitQuote);
        int256 funding = _pendingFunding(p, m.cumulativeFundingIndex);
        int256 equity = int256(uint256(p.collateral)) + pnl - funding;
        uint256 feeCharged;
        uint256 payout;
        if (equity > 0) {
            feeCharged = fee < uint256(equity) ? fee : uint256(equity);
            payout = uint256(equity) - feeCharged;
        }
        vault.settlePosition(Vault.Settlement(owner, p.collateral, equity, payout, feeCharged, address(0), 0, p.notional));
        delete _positions[tokenId];
        nft.burn(tokenId, marketId);
        emit PositionClosed(tokenId, owner, marketId, exitPrice, pnl, funding, payout);
    }

    // ================================================================ liquidation

    /// @inheritdoc IPositionManager
    /// @dev Unwinds the position on the vAMM (no price-impact limit, no trading fee). The keeper
    /// earns liquidationFeeRatio x size x index into its free collateral in the Vault; what is left
    /// goes to the owner; a shortfall is covered by the insurance fund (then recorded as bad debt).
    /// `price` in PositionLiquidated is the vAMM unwind price; `badDebt` is max(0, -equity).
    function liquidatePosition(uint256 tokenId) external nonReentrant {
        PositionData memory p = _positions[tokenId];
        if (p.size == 0) revert PositionNotFound(tokenId);
        MarketData storage m = _markets[p.marketIndex];
        bytes32 marketId = _marketIds[p.marketIndex];
        int256 cum = m.cumulativeFundingIndex;
        (uint256 index,) = oracle.update(marketId);
        uint256 reward;
        {
            (int256 margin, uint256 mm) = _health(p, cum, index, m.maintenanceMarginRatio);
            if (margin >= int256(mm)) revert NotLiquidatable(tokenId, margin, mm);
            reward = uint256(p.size) * index / WAD * m.liquidationFeeRatio / WAD;
        }
        address owner = nft.ownerOf(tokenId);
        (uint256 exitQuote,) = m.vamm.swap(p.isLong, false, p.size, false);
        int256 pnl = _realizedPnl(p, exitQuote);
        int256 equity = int256(uint256(p.collateral)) + pnl - _pendingFunding(p, cum);
        uint256 refund = equity > int256(reward) ? uint256(equity) - reward : 0;
        vault.settlePosition(Vault.Settlement(owner, p.collateral, equity, refund, 0, msg.sender, reward, p.notional));
        delete _positions[tokenId];
        nft.burn(tokenId, marketId);
        emit PositionLiquidated(
            tokenId,
            owner,
            marketId,
            msg.sender,
            exitQuote * WAD / p.size,
            pnl,
            reward,
            refund,
            equity < 0 ? uint256(-equity) : 0
        );
    }

    /// @inheritdoc IPositionManager
    function isPositionLiquidatable(uint256 tokenId) external view returns (bool) {
        return _healthOf(tokenId, 0).liquidatable;
    }

    /// @notice Health of one position (see getPositionsHealth).
    function getPositionHealth(uint256 tokenId) external view returns (PositionHealth memory) {
        return _healthOf(tokenId, 0);
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
    /// @dev Callable by anyone once `fundingInterval` has passed since the last update.
    /// rate = (markTwap - indexTwap) / indexTwap * fundingInterval / 1 day, clamped to
    /// +-maxFundingRate; TWAPs are over [lastFundingTime, now]. The cumulative index (quote per
    /// unit of base, paid by longs when positive) grows by rate * indexTwap.
    function updateFundingRate(bytes32 marketId) external nonReentrant {
        MarketData storage m = _markets[_indexOf(marketId)];
        uint256 last = m.lastFundingTime;
        uint256 interval = m.fundingInterval;
        if (block.timestamp < last + interval) revert FundingTooEarly(marketId, last + interval);
        (uint256 markCum,) = m.vamm.currentPriceCumulative();
        (, uint256 indexCum) = oracle.update(marketId);
        (int256 rate, uint256 markTwap, uint256 indexTwap) = _fundingRate(m, markCum, indexCum, block.timestamp - last);
        int256 cum = int256(m.cumulativeFundingIndex) + rate * int256(indexTwap) / int256(WAD);
        m.cumulativeFundingIndex = cum.toInt128();
        m.fundingRate = int64(rate);
        m.lastFundingTime = uint64(block.timestamp);
        m.markCumulativeSnapshot = uint112(markCum);
        m.indexCumulativeSnapshot = uint112(indexCum);
        m.snapshotTime = uint32(block.timestamp);
        emit FundingRateUpdated(marketId, rate, cum, markTwap, indexTwap, block.timestamp);
    }

    /// @notice What updateFundingRate would compute now (it may still be too early to call it).
    function previewFundingRate(bytes32 marketId)
        external
        view
        returns (int256 rate, uint256 markTwap, uint256 indexTwap)
    {
        MarketData storage m = _markets[_indexOf(marketId)];
        uint256 dt = block.timestamp - m.lastFundingTime;
        if (dt == 0) return (m.fundingRate, m.vamm.markPrice(), oracle.getIndexPrice(marketId));
        (uint256 markCum,) = m.vamm.currentPriceCumulative();
        (uint256 indexCum,) = oracle.indexCumulative(marketId);
        return _fundingRate(m, markCum, indexCum, dt);
    }

    function lastFundingTime(bytes32 marketId) external view returns (uint256) {
        return _markets[_indexOf(marketId)].lastFundingTime;
    }

    function nextFundingTime(bytes32 marketId) external view returns (uint256) {
        MarketData storage m = _markets[_indexOf(marketId)];
        return uint256(m.lastFundingTime) + m.fundingInterval;
    }

    function fundingRate(bytes32 marketId) external view returns (int256) {
        return _markets[_indexOf(marketId)].fundingRate;
    }

    function cumulativeFundingIndex(bytes32 marketId) external view returns (int256) {
        return _markets[_indexOf(marketId)].cumulativeFundingIndex;
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
        return _pendingFunding(p, _markets[p.marketIndex].cumulativeFundingIndex);
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
        realizedPnl = _realizedPnl(p, exitQuote);
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
            paused: m.paused
        });
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

    /// Move pending funding into the collateral and reset the entry index.
    function _settleFunding(PositionData storage p, uint256 tokenId, address owner, bytes32 marketId) internal {
        int256 cum = _markets[p.marketIndex].cumulativeFundingIndex;
        if (cum == p.entryFundingIndex) return;
        PositionData memory pm = p;
        int256 funding = _pendingFunding(pm, cum);
        p.entryFundingIndex = int128(cum);
        if (funding == 0) return;
        int256 c = int256(uint256(pm.collateral)) - funding;
        if (c < 0) revert InsufficientCollateral(pm.collateral, uint256(funding));
        p.collateral = uint256(c).toUint128();
        vault.settleFunding(funding);
        emit MarginChanged(tokenId, owner, marketId, -funding, uint256(c));
    }

    function _checkPriceLimit(bool buying, uint256 price, uint256 limit) internal pure {
        if (limit == 0) return;
        if (buying ? price > limit : price < limit) revert SlippageExceeded(price, limit);
    }

    function _realizedPnl(PositionData memory p, uint256 exitQuote) internal pure returns (int256) {
        int256 d = int256(exitQuote) - int256(uint256(p.notional));
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

    function _healthOf(uint256 tokenId, uint256) internal view returns (PositionHealth memory h) {
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
        h.tokenId = tokenId;
        h.exists = true;
        h.indexPrice = index;
        if (index == 0) {
            h.margin = int256(uint256(p.collateral)) - _pendingFunding(p, m.cumulativeFundingIndex);
            return h;
        }
        (h.margin, h.maintenanceMargin) = _health(p, m.cumulativeFundingIndex, index, m.maintenanceMarginRatio);
        h.liquidatable = h.margin < int256(h.maintenanceMargin);
    }

    function _tryIndexPrice(bytes32 marketId) internal view returns (uint256) {
        try oracle.getIndexPrice(marketId) returns (uint256 p) {
            return p;
        } catch {
            return 0;
        }
    }

    function _fundingRate(MarketData storage m, uint256 markCum, uint256 indexCum, uint256 dt)
        internal
        view
        returns (int256 rate, uint256 markTwap, uint256 indexTwap)
    {
        unchecked {
            markTwap = uint256(uint112(uint112(markCum) - m.markCumulativeSnapshot)) / dt;
            indexTwap = uint256(uint112(uint112(indexCum) - m.indexCumulativeSnapshot)) / dt;
        }
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
