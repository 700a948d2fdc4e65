// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";
import {SafeCast} from "@openzeppelin/contracts/utils/math/SafeCast.sol";
import {PositionManagerBase} from "./PositionManagerBase.sol";
import {Vault} from "./Vault.sol";
import {PositionNFT} from "./PositionNFT.sol";
import {PriceOracle} from "../oracle/PriceOracle.sol";

/// @title The PositionManager's liquidation.
/// @notice Runs only by delegatecall from the PositionManager (its storage); see
/// PositionManagerBase and PositionManager.liquidatePosition.
contract LiquidationModule is PositionManagerBase {
    using SafeCast for uint256;

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
        int256 cum; // the position's side's cumulative funding index now
        uint256 index;
        uint256 remaining; // base size left open
        int256 netDelta;
        address owner;
        bytes32 marketId;
    }

    constructor(Vault vault_, PriceOracle oracle_, PositionNFT nft_)
        PositionManagerBase(vault_, oracle_, nft_)
        Ownable(msg.sender)
    {}

    /// @return closed the base size unwound (all of the position, or the part that fits)
    /// @return reward the caller's reward (its share of the penalty on `closed`)
    function liquidatePosition(uint256 tokenId) external nonReentrant returns (uint256 closed, uint256 reward) {
        return _liquidate(tokenId, 0);
    }

    function liquidatePosition(uint256 tokenId, uint256 priceLimit)
        external
        nonReentrant
        returns (uint256 closed, uint256 reward)
    {
        return _liquidate(tokenId, priceLimit);
    }

    function _liquidate(uint256 tokenId, uint256 priceLimit) internal returns (uint256, uint256) {
        PositionData memory p = _positions[tokenId];
        if (p.size == 0) revert PositionNotFound(tokenId);
        MarketData storage m = _markets[p.marketIndex];
        Liquidation memory l;
        l.marketId = _marketIds[p.marketIndex];
        (int256 cumLong, int256 cumShort) = _accrue(m);
        l.cum = p.isLong ? cumLong : cumShort;
        l.index = oracle.getIndexPrice(l.marketId);
        {
            (int256 margin, uint256 mm) = _health(p, l.cum, l.index, m.maintenanceMarginRatio);
            if (margin >= int256(mm)) revert NotLiquidatable(tokenId, margin, mm);
        }
        _unwind(m, p, l, tokenId, priceLimit);
        _settle(m, p, l);
        l.owner = nft.ownerOf(tokenId);
        l.remaining = p.size - l.closed;
        l.netDelta = _changeExposure(m, p.isLong, -int256(l.closed), -int256(l.notionalClosed));
        {
            Vault.Settlement memory st = Vault.Settlement(
                l.owner,
                p.collateral,
                l.equity,
                0,
                0,
                l.insuranceFee,
                msg.sender,
                l.reward,
                l.notionalClosed.toUint128(),
                l.netDelta,
                l.funding
            );
            if (l.remaining == 0) st.payout = l.rest;
            else st.remaining = l.rest;
            vault.settlePosition(st);
        }
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
        return (l.closed, l.reward);
    }

    /// Unwind as much of the position as the bounds allow (all of it when they do). The mark may
    /// not pass the price at which the position's equity would fall below its penalty (so the
    /// unwind never makes the insurance fund pay for a position the index still keeps solvent),
    /// nor index * (1 -/+ maxSpread); what does not fit waits for a later call.
    function _unwind(MarketData storage m, PositionData memory p, Liquidation memory l, uint256 tokenId, uint256 limit)
        internal
    {
        uint256 bound = _bound(m, p, l);
        uint256 minRemaining = (uint256(m.minNotional) * WAD + l.index - 1) / l.index;
        (l.closed, l.exitQuote) = m.vamm.liquidate(p.isLong, p.size, bound, minRemaining);
        if (l.closed == 0) revert LiquidationOutOfBounds(tokenId, m.vamm.markPrice(), bound);
        _checkPriceLimit(!p.isLong, l.exitQuote * WAD / l.closed, limit);
        l.notionalClosed = l.closed == p.size ? p.notional : uint256(p.notional) * l.closed / p.size;
    }

    /// A floor for the mark when selling a long, a ceiling when buying back a short.
    function _bound(MarketData storage m, PositionData memory p, Liquidation memory l) internal view returns (uint256) {
        uint256 spread = m.maxSpread;
        // equity left for the penalty: collateral - funding - penalty on the whole position
        uint256 penalty = uint256(p.size) * l.index / WAD * m.liquidationFeeRatio / WAD;
        int256 cushion = int256(uint256(p.collateral)) - _pendingFunding(p, l.cum) - int256(penalty);
        uint256 entry = uint256(p.notional) * WAD / p.size;
        if (p.isLong) {
            uint256 floor_ = l.index * (WAD - spread) / WAD;
            if (cushion > 0) {
                // the price where a full unwind leaves exactly the penalty
                uint256 drop = uint256(cushion) * WAD / p.size;
                uint256 pen = entry > drop ? entry - drop : 0;
                if (pen < l.index && pen > floor_) floor_ = pen;
            }
            return floor_;
        }
        uint256 ceiling = (l.index * (WAD + spread) + WAD - 1) / WAD;
        if (cushion > 0) {
            uint256 pen = entry + uint256(cushion) * WAD / p.size;
            if (pen > l.index && pen < ceiling) ceiling = pen;
        }
        return ceiling;
    }

    /// PnL, funding, equity and the penalty split of an unwind.
    function _settle(MarketData storage m, PositionData memory p, Liquidation memory l) internal view {
        l.pnl = _realizedPnl(p.isLong, l.exitQuote, l.notionalClosed);
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
}
