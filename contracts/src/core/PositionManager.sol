// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {IPositionManager} from "../interfaces/IPerpEx.sol";
import {PositionManagerBase} from "./PositionManagerBase.sol";
import {PositionManagerAdmin} from "./PositionManagerAdmin.sol";
import {LiquidationModule} from "./LiquidationModule.sol";
import {VirtualAMM} from "./VirtualAMM.sol";
import {Vault} from "./Vault.sol";
import {PositionNFT} from "./PositionNFT.sol";
import {PriceOracle} from "../oracle/PriceOracle.sol";

/// @title PositionManager: opens, closes and liquidates isolated-margin perpetual positions.
/// @notice Trades execute on the market's VirtualAMM (entry and exit prices come from its quote);
/// margin health is measured at the oracle index price:
///   margin            = collateral + (index - entryPrice) * size / 1e18 (negated for shorts)
///                       - size * (cumulative(side) - entryFundingIndex) / 1e18
///   maintenanceMargin = size * index / 1e18 * maintenanceMarginRatio / 1e18
///   liquidatable      <=> the position exists and margin < maintenanceMargin
/// (Solidity integer division truncates toward zero.) Every amount is WAD; collateral lives in the
/// Vault; each position is a soulbound PositionNFT. Funding: see PositionManagerBase.
///
/// Safety rules (no one may end a block richer while the oracle price stands still):
///  - a close whose equity (collateral + PnL - funding) is negative reverts: only a liquidation
///    may realize a loss beyond the margin, and liquidation eligibility is measured at the index,
///    so moving the vAMM alone never makes a position liquidatable;
///  - the vAMM limits the mark's move per trade and per block, across every trade in the block;
///  - when mark and index diverge by more than `maxSpread`, opening, reducing and removing
///    margin must pass at both prices (the worse one decides);
///  - a liquidation unwinds only what fits inside the vAMM's limits, never pushes the mark past
///    the price where the position's equity would fall below its penalty (while the index keeps
///    it above), nor past index -/+ maxSpread; the rest stays for the next call; after it no
///    open or close trades happen in that market in the same block (no sandwich around it);
///  - funding is zero-sum between longs and shorts and accrues per second at the rate the last
///    update set; an update only sets the next rate; the pool never pays it;
///  - positions below the market's `minNotional` cannot be opened (a keeper's reward must cover
///    its gas); `deadline` and `maxFee` bound a trade against delay and fee changes; parameter
///    changes on live markets wait paramChangeDelay (or the governance timelock's delay).
/// Liquidation and the admin functions run in modules (LiquidationModule,
/// PositionManagerAdmin) by delegatecall, on this contract's storage.
contract PositionManager is PositionManagerBase, IPositionManager {
    using SafeCast for uint256;
    using SafeCast for int256;

    address public immutable liquidationModule;
    address public immutable adminModule;

    constructor(Vault vault_, PriceOracle oracle_, PositionNFT nft_)
        PositionManagerBase(vault_, oracle_, nft_)
        Ownable(msg.sender)
    {
        liquidationModule = address(new LiquidationModule(vault_, oracle_, nft_));
        adminModule = address(new PositionManagerAdmin(vault_, oracle_, nft_));
        _paramChangeDelay = uint64(DEFAULT_PARAM_CHANGE_DELAY);
    }

    // ================================================================ admin (PositionManagerAdmin)

    /// @notice Register a market. Its oracle feed must already be set in the PriceOracle and the
    /// vAMM must have been deployed for this pair and this PositionManager. Safety parameters
    /// start at minNotional 0 (none), liquidationRewardShare 50 % and maxSpread min(1 %, mmr).
    function addMarket(string calldata, VirtualAMM, uint256, uint256, uint256, uint256, uint256)
        external
        returns (bytes32)
    {
        _delegate(adminModule);
    }

    /// @notice Max leverage, maintenance margin ratio, liquidation penalty. On a market with open
    /// positions: scheduled by the first call, applied by the same call paramChangeDelay later.
    function setRiskParams(bytes32, uint256, uint256, uint256) external {
        _delegate(adminModule);
    }

    /// @notice minNotional, liquidationRewardShare, maxSpread (PositionManagerAdmin); scheduled
    /// like setRiskParams on a live market.
    function setSafetyParams(bytes32, uint256, uint256, uint256) external {
        _delegate(adminModule);
    }

    /// @notice Funding interval and rate cap; scheduled like setRiskParams on a live market.
    function setFundingParams(bytes32, uint256, uint256) external {
        _delegate(adminModule);
    }

    /// @notice A paused market refuses openPosition and removeMargin; closing, adding margin,
    /// liquidation and funding updates keep working. The owner or the guardian (pause only).
    function setMarketPaused(bytes32, bool) external {
        _delegate(adminModule);
    }

    /// @notice The address that may pause markets, and do nothing else.
    function setGuardian(address) external {
        _delegate(adminModule);
    }

    /// @notice What a funding update pays its caller from the insurance fund.
    function setFundingReward(uint256) external {
        _delegate(adminModule);
    }

    /// @notice The delay of parameter changes on markets with open positions.
    function setParamChangeDelay(uint256) external {
        _delegate(adminModule);
    }

    function guardian() external view returns (address) {
        return _guardian;
    }

    function fundingReward() external view returns (uint256) {
        return _fundingReward;
    }

    function paramChangeDelay() external view returns (uint256) {
        return _paramChangeDelay;
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
                entryFundingIndex: 0,
                collateral: collateral.toUint128(),
                leverage: leverage.toUint96(),
                openedAt: uint40(block.timestamp),
                openedBlock: uint40(block.number),
                marketIndex: uint8(idx),
                isLong: isLong
            });
        }
        tokenId = _record(m, marketId, p, fee);
    }

    /// Funding entry, health, exposure, vault, NFT and storage of a new position.
    function _record(MarketData storage m, bytes32 marketId, PositionData memory p, uint256 fee)
        internal
        returns (uint256 tokenId)
    {
        p.entryFundingIndex = _accrueSide(m, p.isLong).toInt128();
        _checkHealthy(m, marketId, p);
        int256 netDelta = _changeExposure(m, p.isLong, int256(uint256(p.size)), int256(uint256(p.notional)));
        vault.openPosition(msg.sender, p.collateral, fee, p.notional, netDelta);
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
        int256 pnl = _realizedPnl(p.isLong, exitQuote, p.notional);
        int256 funding = _pendingFunding(p, _accrueSide(m, p.isLong));
        int256 equity = int256(uint256(p.collateral)) + pnl - funding;
        if (equity < 0) revert NegativeEquity(tokenId, equity);
        if (fee > uint256(equity)) fee = uint256(equity);
        uint256 payout = uint256(equity) - fee;
        int256 netDelta = _changeExposure(m, p.isLong, -int256(uint256(p.size)), -int256(uint256(p.notional)));
        vault.settlePosition(
            Vault.Settlement(owner, p.collateral, equity, payout, 0, fee, address(0), 0, p.notional, netDelta, funding)
        );
        bytes32 marketId = _marketIds[p.marketIndex];
        delete _positions[tokenId];
        nft.burn(tokenId, marketId);
        emit PositionClosed(tokenId, owner, marketId, exitQuote * WAD / p.size, pnl, funding, payout, fee);
    }

    /// @inheritdoc IPositionManager
    /// @dev Closes `size` (base) of the position on the vAMM: that part's share of the collateral
    /// (after the whole position's funding is settled into it) plus its PnL, less the fee, is
    /// paid out; the rest of the position keeps the rest of the collateral and must stay healthy
    /// and at least minNotional. Emits PositionDecreased, then PositionReduced. Lets a position
    /// too large to close in one block's price budget leave in parts.
    function reducePosition(uint256 tokenId, uint256 size, uint256 priceLimit, uint256 maxFee, uint256 deadline)
        external
        nonReentrant
    {
        if (block.timestamp > deadline) revert DeadlineExpired(deadline);
        PositionData memory p = _positions[tokenId];
        if (p.size == 0) revert PositionNotFound(tokenId);
        if (size == 0 || size >= p.size) revert InvalidSize(size, p.size);
        address owner = nft.ownerOf(tokenId);
        if (msg.sender != owner) revert NotPositionOwner(tokenId, msg.sender);
        MarketData storage m = _markets[p.marketIndex];
        (uint256 exitQuote, uint256 fee) = m.vamm.swap(p.isLong, false, size);
        if (fee > maxFee) revert FeeTooHigh(fee, maxFee);
        _checkPriceLimit(!p.isLong, exitQuote * WAD / size, priceLimit);
        _settleReduce(tokenId, owner, m, p, size, exitQuote, fee);
    }

    /// The figures of a partial close (memory, to keep the stack small).
    struct Reduction {
        uint256 size;
        uint256 part; // entry notional of the part closed
        int256 cum;
        int256 funding;
        int256 pnl;
        uint256 payout;
        uint256 fee;
        uint256 exitPrice;
        int256 netDelta;
    }

    function _settleReduce(
        uint256 tokenId,
        address owner,
        MarketData storage m,
        PositionData memory p,
        uint256 size,
        uint256 exitQuote,
        uint256 fee
    ) internal {
        Reduction memory r;
        r.size = size;
        r.fee = fee;
        r.exitPrice = exitQuote * WAD / size;
        r.part = uint256(p.notional) * size / p.size;
        r.cum = _accrueSide(m, p.isLong);
        r.funding = _pendingFunding(p, r.cum);
        r.pnl = _realizedPnl(p.isLong, exitQuote, r.part);
        PositionData memory rest = _rest(tokenId, p, r);
        if (rest.notional < m.minNotional) revert PositionTooSmall(rest.notional, m.minNotional);
        bytes32 marketId = _marketIds[p.marketIndex];
        _checkHealthy(m, marketId, rest);
        r.netDelta = _changeExposure(m, p.isLong, -int256(size), -int256(r.part));
        vault.settlePosition(
            Vault.Settlement(
                owner,
                p.collateral,
                int256(uint256(p.collateral)) + r.pnl - r.funding,
                r.payout,
                rest.collateral,
                r.fee,
                address(0),
                0,
                r.part.toUint128(),
                r.netDelta,
                r.funding
            )
        );
        _positions[tokenId] = rest;
        emit PositionDecreased(tokenId, owner, marketId, size, r.exitPrice, r.pnl, r.funding, r.payout, r.fee);
        emit PositionReduced(tokenId, owner, marketId, rest.size, rest.notional, rest.collateral, r.cum);
    }

    /// What is left of a position after closing part of it: the funding settled into the
    /// collateral, the part's share of the collateral (plus its PnL, less the fee) paid out.
    function _rest(uint256 tokenId, PositionData memory p, Reduction memory r)
        internal
        pure
        returns (PositionData memory rest)
    {
        int256 c = int256(uint256(p.collateral)) - r.funding;
        if (c < 0) revert NegativeEquity(tokenId, c);
        uint256 partCollateral = uint256(c) * r.size / p.size;
        int256 partEquity = int256(partCollateral) + r.pnl;
        if (partEquity < 0) revert NegativeEquity(tokenId, partEquity);
        if (r.fee > uint256(partEquity)) r.fee = uint256(partEquity);
        r.payout = uint256(partEquity) - r.fee;
        rest = PositionData({
            size: uint128(p.size - r.size),
            notional: uint128(p.notional - r.part),
            entryFundingIndex: int128(r.cum),
            collateral: uint128(uint256(c) - partCollateral),
            leverage: p.leverage,
            openedAt: p.openedAt,
            openedBlock: p.openedBlock,
            marketIndex: p.marketIndex,
            isLong: p.isLong
        });
    }

    // ================================================================ liquidation (LiquidationModule)

    /// @inheritdoc IPositionManager
    function liquidatePosition(uint256) external returns (uint256 closed, uint256 reward) {
        _delegate(liquidationModule);
    }

    /// @inheritdoc IPositionManager
    /// @dev Unwinds the position on the vAMM (no trading fee) as far as the vAMM's per-trade and
    /// per-block limits allow without pushing the mark past the price where the position's equity
    /// would fall below its penalty (while the index price keeps it above), nor past index * (1
    /// -/+ maxSpread); what does not fit stays open for a later call (PositionReduced), never less
    /// than minNotional. The penalty, liquidationFeeRatio x unwound size x index, is split:
    /// liquidationRewardShare to the caller's free collateral (covered by the insurance fund when
    /// the position cannot pay it), the rest to the insurance fund as far as the position's
    /// equity allows. On a full liquidation what is left goes to the owner; a shortfall is
    /// covered by the insurance fund (then recorded as bad debt). After it, no open/close trades
    /// in this market in this block. `priceLimit` bounds the unwind price (a long sold: price >=
    /// limit; a short bought back: price <= limit; 0 = none). Returns the base size unwound and
    /// the caller's reward (the module's return data, passed through), so a keeper's simulation
    /// (eth_call) tells what the liquidation earns before it is sent.
    function liquidatePosition(uint256, uint256) external returns (uint256 closed, uint256 reward) {
        _delegate(liquidationModule);
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
    /// accrues per second at the speed the previous update set (so a late update charges the
    /// time that passed, and nothing jumps at the update); this checkpoints both sides' indexes
    /// and sets the rate for what follows:
    ///   rate = (markTwap - indexTwap) / indexTwap * fundingInterval / 1 day, clamped to
    ///   +-maxFundingRate; fundingPerSecond = rate * indexTwap / fundingInterval.
    /// markTwap is the vAMM's over [lastFundingTime, now]; indexTwap comes from the feed's round
    /// history over the same window. Pays the caller `fundingReward` from the insurance fund
    /// (as far as it holds it): keeping funding current is permissionless keeping.
    function updateFundingRate(bytes32 marketId) external nonReentrant {
        MarketData storage m = _markets[_indexOf(marketId)];
        uint256 last = m.lastFundingTime;
        uint256 interval = m.fundingInterval;
        if (block.timestamp < last + interval) revert FundingTooEarly(marketId, last + interval);
        (int256 cumLong, int256 cumShort) = _cumulatives(m);
        (uint256 markCum,) = m.vamm.currentPriceCumulative();
        (int256 rate, uint256 markTwap, uint256 indexTwap) = _fundingRate(m, marketId, markCum, last);
        int256 speed = rate * int256(indexTwap) / int256(WAD) / int256(interval);
        m.cumulativeLong = cumLong.toInt128();
        m.cumulativeShort = cumShort.toInt128();
        m.fundingPerSecond = speed.toInt128();
        m.lastAccrual = uint64(block.timestamp);
        m.lastFundingTime = uint64(block.timestamp);
        m.fundingRate = int64(rate);
        m.markCumulativeSnapshot = uint112(markCum);
        emit FundingRateUpdated(marketId, rate, cumLong, cumShort, markTwap, indexTwap, block.timestamp, speed);
        uint256 reward = m.fundingReward;
        if (reward != 0) vault.payReward(msg.sender, reward);
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

    /// @notice What one unit of base on the paying side pays per second when both sides are
    /// equal (positive: longs pay).
    function fundingPerSecond(bytes32 marketId) external view returns (int256) {
        return _markets[_indexOf(marketId)].fundingPerSecond;
    }

    /// @notice The longs' cumulative funding index now (see cumulativeFunding for both sides).
    function cumulativeFundingIndex(bytes32 marketId) external view returns (int256 long) {
        (long,) = _cumulatives(_markets[_indexOf(marketId)]);
    }

    /// @notice Both sides' cumulative funding indexes now (quote per unit of base paid by that
    /// side since the market was added; falling: it receives).
    function cumulativeFunding(bytes32 marketId) external view returns (int256 long, int256 short) {
        return _cumulatives(_markets[_indexOf(marketId)]);
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
        return _pendingFunding(p, _cumulative(_markets[p.marketIndex], p.isLong));
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
        return _markets[_indexOf(marketId)].vamm.quoteOpen(isLong, collateral * leverage / WAD);
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
        realizedPnl = _realizedPnl(p.isLong, exitQuote, p.notional);
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
    /// answer), mark, both sides' cumulative funding indexes, open base size by side.
    function marketState(bytes32 marketId)
        external
        view
        returns (uint256 index, uint256 mark, int256 fundingLong, int256 fundingShort, uint256 longSize, uint256 shortSize)
    {
        MarketData storage m = _markets[_indexOf(marketId)];
        (fundingLong, fundingShort) = _cumulatives(m);
        return (_tryIndexPrice(marketId), m.vamm.markPrice(), fundingLong, fundingShort, m.longSize, m.shortSize);
    }

    /// @notice Open positions' aggregate unrealized PnL if all were closed on the vAMM now
    /// (positive: traders are in profit and the pool owes it; fees and funding, which is
    /// zero-sum, not included). The vault prices liquidity shares with it.
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

    function _delegate(address module) internal {
        assembly ("memory-safe") {
            calldatacopy(0, 0, calldatasize())
            let ok := delegatecall(gas(), module, 0, calldatasize(), 0, 0)
            returndatacopy(0, 0, returndatasize())
            switch ok
            case 0 { revert(0, returndatasize()) }
            default { return(0, returndatasize()) }
        }
    }

    function _accrueSide(MarketData storage m, bool isLong) internal returns (int256) {
        (int256 cumLong, int256 cumShort) = _accrue(m);
        return isLong ? cumLong : cumShort;
    }

    /// Move pending funding into the collateral and reset the entry index.
    function _settleFunding(PositionData storage p, uint256 tokenId, address owner, bytes32 marketId) internal {
        int256 cum = _cumulative(_markets[p.marketIndex], p.isLong);
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
        int256 cum = _cumulative(m, p.isLong);
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
}
