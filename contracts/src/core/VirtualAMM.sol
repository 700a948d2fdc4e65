// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {Math} from "@openzeppelin/contracts/utils/math/Math.sol";

/// @title VirtualAMM: one constant-product (x*y=k) virtual pool per market.
/// @notice No tokens are held: reserves are virtual and only the PositionManager trades against
/// them. Every amount and price is WAD (18 decimals). Rounding always favours the protocol, so an
/// open/close round trip never returns more quote than was put in.
/// Mark price = quoteReserve / baseReserve. A cumulative mark-price accumulator (price x seconds,
/// the price before a trade holds since the previous trade) gives the mark TWAP for funding.
contract VirtualAMM is Ownable2Step {
    uint256 internal constant WAD = 1e18;

    error OnlyPositionManager();
    error InvalidReserves();
    error InvalidParams();
    error ZeroAmount();
    error InsufficientReserve();
    error PriceImpactTooHigh(uint256 impact, uint256 limit);

    event Swap(bool isLong, bool isOpen, uint256 quoteAmount, uint256 baseAmount, uint256 markPriceAfter);
    event ParamsUpdated(uint256 feeRatio, uint256 maxPriceImpact);

    bytes32 public immutable marketId;
    address public immutable positionManager;
    string public pair;

    // slot: reserves
    uint128 public baseReserve;
    uint128 public quoteReserve;
    // slot: mark accumulator
    uint192 public priceCumulativeLast;
    uint64 public lastTimestamp;
    // slot: parameters
    uint64 public feeRatio; // trading fee, fraction of the traded notional (WAD)
    uint64 public maxPriceImpact; // per-trade limit on the mark move (WAD)

    constructor(
        string memory pair_,
        address positionManager_,
        uint256 baseReserve_,
        uint256 quoteReserve_,
        uint256 feeRatio_,
        uint256 maxPriceImpact_
    ) Ownable(msg.sender) {
        if (positionManager_ == address(0)) revert InvalidParams();
        if (baseReserve_ < 1e6 || quoteReserve_ < 1e6 || baseReserve_ > type(uint112).max || quoteReserve_ > type(uint112).max) {
            revert InvalidReserves();
        }
        pair = pair_;
        marketId = keccak256(bytes(pair_));
        positionManager = positionManager_;
        baseReserve = uint128(baseReserve_);
        quoteReserve = uint128(quoteReserve_);
        lastTimestamp = uint64(block.timestamp);
        _setParams(feeRatio_, maxPriceImpact_);
    }

    // ---------------------------------------------------------------- admin

    function setParams(uint256 feeRatio_, uint256 maxPriceImpact_) external onlyOwner {
        _setParams(feeRatio_, maxPriceImpact_);
    }

    // ---------------------------------------------------------------- trading (PositionManager only)

    /// @notice Trade against the pool.
    /// @param isLong direction of the position being opened or closed.
    /// @param isOpen true: `amount` is the quote notional to open (returns the base size);
    ///               false: `amount` is the base size to close (returns the quote amount).
    /// @param checkImpact enforce `maxPriceImpact` (liquidations pass false).
    /// @return result base size (open) or quote amount (close)
    /// @return fee trading fee on the quote amount, rounded up
    function swap(bool isLong, bool isOpen, uint256 amount, bool checkImpact)
        external
        returns (uint256 result, uint256 fee)
    {
        if (msg.sender != positionManager) revert OnlyPositionManager();
        if (amount == 0) revert ZeroAmount();
        uint256 b = baseReserve;
        uint256 q = quoteReserve;
        uint256 markBefore = q * WAD / b;
        _accumulate(markBefore);

        (uint256 nb, uint256 nq, uint256 out) = _trade(b, q, isLong, isOpen, amount);
        if (nb > type(uint112).max || nq > type(uint112).max) revert InvalidReserves();
        baseReserve = uint128(nb);
        quoteReserve = uint128(nq);

        uint256 markAfter = nq * WAD / nb;
        if (checkImpact) _checkImpact(markBefore, markAfter);
        result = out;
        if (isOpen) {
            fee = Math.mulDiv(amount, feeRatio, WAD, Math.Rounding.Ceil);
            emit Swap(isLong, true, amount, out, markAfter);
        } else {
            fee = Math.mulDiv(out, feeRatio, WAD, Math.Rounding.Ceil);
            emit Swap(isLong, false, out, amount, markAfter);
        }
    }

    /// Accumulate the mark price that held since the last trade.
    function _accumulate(uint256 mark) private {
        uint256 last = lastTimestamp;
        if (block.timestamp > last) {
            priceCumulativeLast = uint192(priceCumulativeLast + mark * (block.timestamp - last));
            lastTimestamp = uint64(block.timestamp);
        }
    }

    function _checkImpact(uint256 markBefore, uint256 markAfter) private view {
        uint256 impact = markAfter > markBefore ? markAfter - markBefore : markBefore - markAfter;
        impact = impact * WAD / markBefore;
        uint256 limit = maxPriceImpact;
        if (impact > limit) revert PriceImpactTooHigh(impact, limit);
    }

    // ---------------------------------------------------------------- views

    function markPrice() public view returns (uint256) {
        return uint256(quoteReserve) * WAD / baseReserve;
    }

    function getReserves() external view returns (uint256 base, uint256 quote) {
        return (baseReserve, quoteReserve);
    }

    /// @notice The mark accumulator extrapolated to now, and now.
    function currentPriceCumulative() external view returns (uint256 cumulative, uint256 timestamp) {
        cumulative = uint256(priceCumulativeLast) + markPrice() * (block.timestamp - lastTimestamp);
        timestamp = block.timestamp;
    }

    /// @notice Quote opening a position of `notional` quote.
    /// @return size base size received (long) or owed (short)
    /// @return avgPrice notional * 1e18 / size
    /// @return fee trading fee
    /// @return priceImpact mark move caused by the trade, fraction of the mark (WAD)
    function quoteOpen(bool isLong, uint256 notional)
        external
        view
        returns (uint256 size, uint256 avgPrice, uint256 fee, uint256 priceImpact)
    {
        (size, priceImpact) = _quote(isLong, true, notional);
        avgPrice = size == 0 ? 0 : notional * WAD / size;
        fee = Math.mulDiv(notional, feeRatio, WAD, Math.Rounding.Ceil);
    }

    /// @notice Quote closing a position of `size` base.
    /// @return quoteAmount quote received (long) or paid (short)
    /// @return avgPrice quoteAmount * 1e18 / size
    /// @return fee trading fee
    /// @return priceImpact mark move caused by the trade, fraction of the mark (WAD)
    function quoteClose(bool isLong, uint256 size)
        external
        view
        returns (uint256 quoteAmount, uint256 avgPrice, uint256 fee, uint256 priceImpact)
    {
        (quoteAmount, priceImpact) = _quote(isLong, false, size);
        avgPrice = size == 0 ? 0 : quoteAmount * WAD / size;
        fee = Math.mulDiv(quoteAmount, feeRatio, WAD, Math.Rounding.Ceil);
    }

    // ---------------------------------------------------------------- internals

    function _quote(bool isLong, bool isOpen, uint256 amount) private view returns (uint256 out, uint256 impact) {
        if (amount == 0) return (0, 0);
        uint256 b = baseReserve;
        uint256 q = quoteReserve;
        uint256 nb;
        uint256 nq;
        (nb, nq, out) = _trade(b, q, isLong, isOpen, amount);
        uint256 before = q * WAD / b;
        uint256 afterP = nq * WAD / nb;
        impact = (afterP > before ? afterP - before : before - afterP) * WAD / before;
    }

    /// Constant product with protocol-favouring rounding: the reserve that is computed is rounded
    /// up, so what the trader receives is rounded down and what the trader pays is rounded up.
    function _trade(uint256 b, uint256 q, bool isLong, bool isOpen, uint256 amount)
        private
        pure
        returns (uint256 nb, uint256 nq, uint256 out)
    {
        uint256 k = b * q;
        if (isOpen) {
            if (isLong) {
                // quote in, base out
                nq = q + amount;
                nb = Math.ceilDiv(k, nq);
                out = b - nb;
            } else {
                // base in, exact quote out
                if (amount >= q) revert InsufficientReserve();
                nq = q - amount;
                nb = Math.ceilDiv(k, nq);
                out = nb - b;
            }
        } else {
            if (isLong) {
                // base in, quote out
                nb = b + amount;
                nq = Math.ceilDiv(k, nb);
                out = q - nq;
            } else {
                // exact base out, quote in
                if (amount >= b) revert InsufficientReserve();
                nb = b - amount;
                nq = Math.ceilDiv(k, nb);
                out = nq - q;
            }
        }
        if (out == 0) revert ZeroAmount();
    }

    function _setParams(uint256 feeRatio_, uint256 maxPriceImpact_) private {
        if (feeRatio_ > 0.1e18 || maxPriceImpact_ == 0 || maxPriceImpact_ > WAD) revert InvalidParams();
        feeRatio = uint64(feeRatio_);
        maxPriceImpact = uint64(maxPriceImpact_);
        emit ParamsUpdated(feeRatio_, maxPriceImpact_);
    }
}
