// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {PositionManagerBase} from "./PositionManagerBase.sol";
import {VirtualAMM} from "./VirtualAMM.sol";
import {Vault} from "./Vault.sol";
import {PositionNFT} from "./PositionNFT.sol";
import {PriceOracle} from "../oracle/PriceOracle.sol";

/// @title The PositionManager's market registry and parameter setters.
/// @notice Runs only by delegatecall from the PositionManager (its storage, its owner); see
/// PositionManagerBase. A change of risk, safety or funding parameters on a market with open
/// positions is scheduled by its first call and applied by the same call repeated between
/// paramChangeDelay and paramChangeDelay + PARAM_CHANGE_WINDOW later.
contract PositionManagerAdmin is PositionManagerBase {
    constructor(Vault vault_, PriceOracle oracle_, PositionNFT nft_)
        PositionManagerBase(vault_, oracle_, nft_)
        Ownable(msg.sender)
    {}

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
        uint256 spread = maintenanceMarginRatio < 0.01e18 ? maintenanceMarginRatio : 0.01e18;

        (uint256 markCum,) = vamm.currentPriceCumulative();
        MarketData storage m = _markets[idx];
        m.vamm = vamm;
        m.fundingInterval = uint32(fundingInterval);
        m.maxFundingRate = uint64(maxFundingRate);
        m.maxLeverage = uint96(maxLeverage);
        m.maintenanceMarginRatio = uint64(maintenanceMarginRatio);
        m.liquidationFeeRatio = uint64(liquidationFeeRatio);
        m.lastFundingTime = uint64(block.timestamp);
        m.lastAccrual = uint64(block.timestamp);
        m.markCumulativeSnapshot = uint112(markCum);
        m.fundingReward = uint80(_fundingReward);
        m.liquidationRewardShare = 0.5e18;
        m.maxSpread = uint64(spread);
        m.longLive = 1;
        m.shortLive = 1;
        _marketIds.push(marketId);
        _marketIndexPlusOne[marketId] = idx + 1;
        emit MarketAdded(marketId, pair, address(vamm), feed);
        emit RiskParamsUpdated(marketId, maxLeverage, maintenanceMarginRatio, liquidationFeeRatio);
        emit FundingParamsUpdated(marketId, fundingInterval, maxFundingRate);
        emit SafetyParamsUpdated(marketId, 0, 0.5e18, spread);
    }

    function setRiskParams(
        bytes32 marketId,
        uint256 maxLeverage,
        uint256 maintenanceMarginRatio,
        uint256 liquidationFeeRatio
    ) external onlyOwner {
        MarketData storage m = _markets[_indexOf(marketId)];
        _validateRisk(maxLeverage, maintenanceMarginRatio, liquidationFeeRatio);
        if (maintenanceMarginRatio < m.maxSpread) revert InvalidMarketConfig();
        if (!_due(m, marketId, abi.encode(this.setRiskParams.selector, marketId, maxLeverage, maintenanceMarginRatio, liquidationFeeRatio))) return;
        m.maxLeverage = uint96(maxLeverage);
        m.maintenanceMarginRatio = uint64(maintenanceMarginRatio);
        m.liquidationFeeRatio = uint64(liquidationFeeRatio);
        emit RiskParamsUpdated(marketId, maxLeverage, maintenanceMarginRatio, liquidationFeeRatio);
    }

    /// @notice minNotional: the smallest position that may be opened (quote, WAD); set it so that
    /// the keeper's share of the penalty on it covers a liquidation's gas. liquidationRewardShare:
    /// the keeper's part of the liquidation penalty, the rest goes to the insurance fund.
    /// maxSpread (at most the maintenance margin ratio): the mark/index divergence past which
    /// margin checks use the worse price, and the farthest past the index a liquidation may push
    /// the mark.
    function setSafetyParams(bytes32 marketId, uint256 minNotional, uint256 liquidationRewardShare, uint256 maxSpread)
        external
        onlyOwner
    {
        MarketData storage m = _markets[_indexOf(marketId)];
        if (
            minNotional > type(uint96).max || liquidationRewardShare > WAD || maxSpread == 0
                || maxSpread > m.maintenanceMarginRatio
        ) {
            revert InvalidMarketConfig();
        }
        if (!_due(m, marketId, abi.encode(this.setSafetyParams.selector, marketId, minNotional, liquidationRewardShare, maxSpread))) return;
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
        if (!_due(m, marketId, abi.encode(this.setFundingParams.selector, marketId, fundingInterval, maxFundingRate))) return;
        m.fundingInterval = uint32(fundingInterval);
        m.maxFundingRate = uint64(maxFundingRate);
        emit FundingParamsUpdated(marketId, fundingInterval, maxFundingRate);
    }

    /// @notice A paused market refuses openPosition and removeMargin; closing, adding margin,
    /// liquidation and funding updates keep working so that risk can always be reduced.
    /// Immediate: pausing only ever lets traders reduce risk. The guardian may pause, never
    /// unpause.
    function setMarketPaused(bytes32 marketId, bool paused) external {
        if (msg.sender != owner() && (msg.sender != _guardian || !paused)) {
            if (msg.sender != _guardian) revert OwnableUnauthorizedAccount(msg.sender);
            revert NotGuardian(msg.sender);
        }
        _markets[_indexOf(marketId)].paused = paused;
        emit MarketPaused(marketId, paused);
    }

    /// @notice The guardian may pause markets and do nothing else (address(0): none).
    function setGuardian(address guardian_) external onlyOwner {
        _guardian = guardian_;
        emit GuardianSet(guardian_);
    }

    /// @notice What a funding update pays its caller from the insurance fund (at most
    /// MAX_FUNDING_REWARD; one update per market per interval bounds the total).
    function setFundingReward(uint256 reward) external onlyOwner {
        if (reward > MAX_FUNDING_REWARD) revert InvalidMarketConfig();
        _fundingReward = uint96(reward);
        uint256 n = _marketIds.length;
        for (uint256 i; i < n; ++i) {
            _markets[i].fundingReward = uint80(reward);
        }
        emit FundingRewardSet(reward);
    }

    /// @notice The delay of parameter changes on live markets (at most MAX_PARAM_CHANGE_DELAY).
    /// Raising it is immediate; lowering it while any market has open positions is itself
    /// delayed by the current delay.
    function setParamChangeDelay(uint256 delay) external onlyOwner {
        if (delay > MAX_PARAM_CHANGE_DELAY) revert InvalidMarketConfig();
        if (delay < _paramChangeDelay && !_dueGlobal(abi.encode(this.setParamChangeDelay.selector, delay))) return;
        _paramChangeDelay = uint64(delay);
        emit ParamChangeDelaySet(delay);
    }

    /// True when the change may apply now: at once on a market without open positions; on a live
    /// market the first call schedules it (false) and a repeat inside its window applies it.
    function _due(MarketData storage m, bytes32 marketId, bytes memory change) internal returns (bool) {
        if ((m.longSize == 0 && m.shortSize == 0) || _paramChangeDelay == 0) return true;
        return _scheduled(marketId, change);
    }

    /// As _due, for a change that concerns every market.
    function _dueGlobal(bytes memory change) internal returns (bool) {
        uint256 n = _marketIds.length;
        for (uint256 i; i < n; ++i) {
            MarketData storage m = _markets[i];
            if (m.longSize != 0 || m.shortSize != 0) return _scheduled(bytes32(0), change);
        }
        return true;
    }

    function _scheduled(bytes32 marketId, bytes memory change) internal returns (bool) {
        bytes32 id = keccak256(change);
        uint256 eta = _paramChangeEta[id];
        if (eta == 0 || block.timestamp > eta + PARAM_CHANGE_WINDOW) {
            eta = block.timestamp + _paramChangeDelay;
            _paramChangeEta[id] = eta;
            emit ParamChangeScheduled(marketId, id, eta);
            return false;
        }
        if (block.timestamp < eta) revert ParamChangeNotReady(id, eta);
        delete _paramChangeEta[id];
        return true;
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
