// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

/// @title Perp-EX public interfaces
/// @notice The stable surface the off-chain services (indexer, keeper, funding updater) depend on.
/// Units: every price, amount, leverage, ratio and rate is an 18-decimal fixed-point number (WAD)
/// unless stated otherwise. A market is identified by `marketId = keccak256(bytes(pair))`,
/// e.g. keccak256("ETH/USDT").

interface IPositionManagerEvents {
    /// Emitted when a position is opened (after PositionNFT.PositionMinted in the same tx).
    /// `entryFundingIndex` is the market's cumulative funding index the position starts from.
    event PositionOpened(
        uint256 indexed tokenId,
        address indexed owner,
        bytes32 indexed marketId,
        bool isLong,
        uint256 collateral,
        uint256 leverage,
        uint256 size,
        uint256 notional,
        uint256 entryPrice,
        uint256 fee,
        int256 entryFundingIndex
    );

    /// Emitted when the owner closes a position. `realizedPnl` excludes funding and fees;
    /// `payout` is what returned to the owner's free collateral; `fee` the trading fee charged.
    event PositionClosed(
        uint256 indexed tokenId,
        address indexed owner,
        bytes32 indexed marketId,
        uint256 exitPrice,
        int256 realizedPnl,
        int256 fundingPayment,
        uint256 payout,
        uint256 fee
    );

    /// Emitted when a keeper liquidates all or part of a position. `size` is the base size
    /// unwound by this call, `remainingSize` what is left open (0: the position is gone; otherwise
    /// PositionReduced follows with its new state). `price` is the vAMM unwind price,
    /// `realizedPnl` the PnL of the part unwound, `fundingPayment` the whole position's funding
    /// settled, `liquidatorReward` + `insuranceFee` the liquidation penalty (the keeper's share is
    /// paid even when the position cannot pay it: the insurance fund covers it), `ownerRefund` what
    /// returned to the owner (full liquidation only), `badDebt` max(0, -equity).
    event PositionLiquidated(
        uint256 indexed tokenId,
        address indexed owner,
        bytes32 indexed marketId,
        address liquidator,
        uint256 price,
        int256 realizedPnl,
        uint256 liquidatorReward,
        uint256 ownerRefund,
        uint256 badDebt,
        uint256 size,
        uint256 remainingSize,
        int256 fundingPayment,
        uint256 insuranceFee
    );

    /// Emitted when the owner closes part of a position (reducePosition): the part's `size`,
    /// its exit price and realized PnL, the whole position's `fundingPayment` (settled into the
    /// collateral), what was paid out to the owner and the trading fee. PositionReduced follows.
    event PositionDecreased(
        uint256 indexed tokenId,
        address indexed owner,
        bytes32 indexed marketId,
        uint256 size,
        uint256 exitPrice,
        int256 realizedPnl,
        int256 fundingPayment,
        uint256 payout,
        uint256 fee
    );

    /// The state of a position after a partial liquidation or a partial close (emitted right
    /// after its PositionLiquidated / PositionDecreased): size, entry notional and collateral
    /// left, and the funding index (of its side) it now accrues from.
    event PositionReduced(
        uint256 indexed tokenId,
        address indexed owner,
        bytes32 indexed marketId,
        uint256 size,
        uint256 notional,
        uint256 collateral,
        int256 entryFundingIndex
    );

    /// Emitted on addMargin / removeMargin (and when pending funding is settled into collateral,
    /// with delta = -funding). `entryFundingIndex` is the position's funding index afterwards.
    event MarginChanged(
        uint256 indexed tokenId,
        address indexed owner,
        bytes32 indexed marketId,
        int256 delta,
        uint256 newCollateral,
        int256 entryFundingIndex
    );

    /// Emitted by updateFundingRate. `fundingRate` is the rate this sets for the coming period
    /// (fraction of the index price per funding interval, positive: longs pay shorts), from the
    /// mark/index premium over the period just ended (`markTwap`, `indexTwap`);
    /// `fundingPerSecond` = rate * indexTwap / interval is what one unit of base on the paying
    /// side pays per second when both sides are equal. Funding is zero-sum and accrues every
    /// second: each second the paying side pays fundingPerSecond x min(long size, short size) in
    /// all, pro rata, and the other side receives exactly that, pro rata; with one side empty
    /// nothing moves. Each side has its own cumulative index (quote per unit of base paid by that
    /// side; falling: it receives); `cumulativeFundingLong/Short` are their values at `timestamp`.
    event FundingRateUpdated(
        bytes32 indexed marketId,
        int256 fundingRate,
        int256 cumulativeFundingLong,
        int256 cumulativeFundingShort,
        uint256 markTwap,
        uint256 indexTwap,
        uint256 timestamp,
        int256 fundingPerSecond
    );

    event MarketAdded(bytes32 indexed marketId, string pair, address vamm, address oracleFeed);
    event MarketPaused(bytes32 indexed marketId, bool paused);
}

interface IPositionManager is IPositionManagerEvents {
    struct Position {
        bytes32 marketId;
        bool isLong;
        uint256 collateral; // margin locked in the vault for this position
        uint256 leverage;
        uint256 size; // base amount (WAD)
        uint256 notional; // quote amount at entry (WAD)
        uint256 entryPrice; // notional * 1e18 / size
        int256 entryFundingIndex; // its side's cumulative funding index at open / last settlement
        uint64 openedAt; // block timestamp
        uint64 openedBlock;
    }

    struct PositionHealth {
        uint256 tokenId;
        bool exists;
        bool liquidatable;
        int256 margin; // collateral + unrealized PnL at index price - pending funding
        uint256 maintenanceMargin; // size * indexPrice * maintenanceMarginRatio
        uint256 indexPrice;
    }

    struct MarketConfig {
        address vamm;
        address oracleFeed;
        uint256 maxLeverage;
        uint256 maintenanceMarginRatio;
        uint256 liquidationFeeRatio; // liquidation penalty, fraction of the unwound notional at index
        uint256 fundingInterval; // seconds, default 8 hours
        uint256 maxFundingRate; // absolute clamp per interval
        bool paused;
        uint256 minNotional; // smallest position (quote at entry)
        uint256 liquidationRewardShare; // the keeper's share of the liquidation penalty
        uint256 maxSpread; // mark/index divergence past which margin checks use the worse price
    }

    // ---- trading ----
    function openPosition(bytes32 marketId, bool isLong, uint256 collateral, uint256 leverage, uint256 priceLimit)
        external
        returns (uint256 tokenId);
    function openPosition(
        bytes32 marketId,
        bool isLong,
        uint256 collateral,
        uint256 leverage,
        uint256 priceLimit,
        uint256 maxFee,
        uint256 deadline
    ) external returns (uint256 tokenId);
    function addMargin(uint256 tokenId, uint256 amount) external;
    function removeMargin(uint256 tokenId, uint256 amount) external;
    function closePosition(uint256 tokenId, uint256 priceLimit) external;
    function closePosition(uint256 tokenId, uint256 priceLimit, uint256 maxFee, uint256 deadline) external;
    function reducePosition(uint256 tokenId, uint256 size, uint256 priceLimit, uint256 maxFee, uint256 deadline)
        external;

    // ---- liquidation ----
    /// Returns the base size unwound (`closed`, the whole position or part of it) and the
    /// caller's reward (collateral): what a keeper's eth_call of it earns at that state.
    function liquidatePosition(uint256 tokenId) external returns (uint256 closed, uint256 reward);
    function liquidatePosition(uint256 tokenId, uint256 priceLimit) external returns (uint256 closed, uint256 reward);
    function isPositionLiquidatable(uint256 tokenId) external view returns (bool);
    function getPositionsHealth(uint256[] calldata tokenIds) external view returns (PositionHealth[] memory);

    // ---- funding ----
    function lastFundingTime(bytes32 marketId) external view returns (uint256);
    function nextFundingTime(bytes32 marketId) external view returns (uint256);
    function fundingRate(bytes32 marketId) external view returns (int256);
    function cumulativeFundingIndex(bytes32 marketId) external view returns (int256);
    function cumulativeFunding(bytes32 marketId) external view returns (int256 long, int256 short);
    function updateFundingRate(bytes32 marketId) external;

    // ---- views ----
    function getPosition(uint256 tokenId) external view returns (Position memory);
    function getMarket(bytes32 marketId) external view returns (MarketConfig memory);
    function marketIds() external view returns (bytes32[] memory);
    function indexPrice(bytes32 marketId) external view returns (uint256);
    function markPrice(bytes32 marketId) external view returns (uint256);
}

interface IPositionNFTEvents {
    event PositionMinted(uint256 indexed tokenId, address indexed owner, bytes32 indexed marketId);
    event PositionBurned(uint256 indexed tokenId, address indexed owner, bytes32 indexed marketId);
}
