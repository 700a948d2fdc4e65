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
///
/// Manipulation limits (every one is checked on every trade, liquidations included):
///  - per trade: the mark may move at most `maxPriceImpact` (fraction of the mark before it);
///  - per block: the mark may end at most `maxPriceMovePerBlock` away from the mark the block
///    started with (the mark before its first trade), however many trades the block holds;
///  - restriction: after a liquidation in a block, no open or close trades in that block.
/// A liquidation is never refused for size: it unwinds as much of the position as fits inside the
/// limits and a price bound from its caller (partial liquidation) and reports how much it did.
contract VirtualAMM is Ownable2Step {
    uint256 internal constant WAD = 1e18;

    error OnlyPositionManager();
    error InvalidReserves();
    error InvalidParams();
    error ZeroAmount();
    error InsufficientReserve();
    error PriceImpactTooHigh(uint256 impact, uint256 limit);
    error BlockPriceMoveTooHigh(uint256 move, uint256 limit);
    error MarketRestricted(uint256 blockNumber);

    event Swap(bool isLong, bool isOpen, uint256 quoteAmount, uint256 baseAmount, uint256 markPriceAfter);
    event ParamsUpdated(uint256 feeRatio, uint256 maxPriceImpact);
    event BlockPriceMoveLimitUpdated(uint256 maxPriceMovePerBlock);

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
    uint64 public maxPriceMovePerBlock; // per-block limit on the mark move from the block's start (WAD)
    // slot: this block's reference mark and restriction
    uint128 public blockStartMark; // the mark before the first trade of `blockStartNumber`
    uint64 public blockStartNumber;
    uint64 public restrictedBlock; // block of the last liquidation: no open/close trades in it

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
        // non-zero from the start, so the first trade's write is not a zero -> non-zero one
        blockStartMark = uint128(quoteReserve_ * WAD / baseReserve_);
        blockStartNumber = uint64(block.number);
        _setParams(feeRatio_, maxPriceImpact_);
        _setBlockLimit(maxPriceImpact_);
    }

    // ---------------------------------------------------------------- admin

    function setParams(uint256 feeRatio_, uint256 maxPriceImpact_) external onlyOwner {
        _setParams(feeRatio_, maxPriceImpact_);
    }

    /// @notice The per-block limit on the mark move (fraction of the block's starting mark).
    function setBlockPriceMoveLimit(uint256 maxPriceMovePerBlock_) external onlyOwner {
        _setBlockLimit(maxPriceMovePerBlock_);
    }

    // ---------------------------------------------------------------- trading (PositionManager only)

    /// @notice Trade against the pool (open or close a position). Refused in a restricted block
    /// and when the trade would pass the per-trade or per-block price limits.
    /// @param isLong direction of the position being opened or closed.
    /// @param isOpen true: `amount` is the quote notional to open (returns the base size);
    ///               false: `amount` is the base size to close (returns the quote amount).
    /// @return result base size (open) or quote amount (close)
    /// @return fee trading fee on the quote amount, rounded up
    function swap(bool isLong, bool isOpen, uint256 amount) external returns (uint256 result, uint256 fee) {
        if (msg.sender != positionManager) revert OnlyPositionManager();
        if (amount == 0) revert ZeroAmount();
        (uint256 b, uint256 q, uint256 markBefore, uint256 start) = _begin();
        if (restrictedBlock == block.number) revert MarketRestricted(block.number);

        (uint256 nb, uint256 nq, uint256 out) = _trade(b, q, isLong, isOpen, amount);
        uint256 markAfter = _store(nb, nq);
        _checkMove(markBefore, markAfter, maxPriceImpact, false);
        _checkMove(start, markAfter, maxPriceMovePerBlock, true);
        result = out;
        if (isOpen) {
            fee = Math.mulDiv(amount, feeRatio, WAD, Math.Rounding.Ceil);
            emit Swap(isLong, true, amount, out, markAfter);
        } else {
            fee = Math.mulDiv(out, feeRatio, WAD, Math.Rounding.Ceil);
            emit Swap(isLong, false, out, amount, markAfter);
        }
    }

    /// @notice Unwind up to `size` of a position being liquidated, as much as fits: the mark may
    /// not pass `bound` (a floor when a long is sold, a ceiling when a short is bought back), nor
    /// the per-trade and per-block limits. When less than `size` fits and fewer than
    /// `minRemaining` would be left, `minRemaining` is left (no dust positions). Marks the block
    /// as restricted. Returns the base size unwound (0: nothing fits) and its quote amount.
    function liquidate(bool isLong, uint256 size, uint256 bound, uint256 minRemaining)
        external
        returns (uint256 closed, uint256 quote)
    {
        if (msg.sender != positionManager) revert OnlyPositionManager();
        (uint256 b, uint256 q, uint256 markBefore, uint256 start) = _begin();
        bound = _limit(isLong, markBefore, start, bound);
        closed = _fit(b, q, isLong, size, bound);
        if (closed < size && size - closed < minRemaining) {
            closed = size > minRemaining ? size - minRemaining : 0;
        }
        if (closed == 0) return (0, 0);
        restrictedBlock = uint64(block.number);
        quote = _unwind(b, q, isLong, closed);
    }

    function _unwind(uint256 b, uint256 q, bool isLong, uint256 size) private returns (uint256 out) {
        (uint256 nb, uint256 nq, uint256 o) = _trade(b, q, isLong, false, size);
        uint256 markAfter = _store(nb, nq);
        out = o;
        emit Swap(isLong, false, o, size, markAfter);
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

    /// @notice True when open and close trades are refused for the rest of this block (a
    /// liquidation happened in it).
    function isRestricted() external view returns (bool) {
        return restrictedBlock == block.number;
    }

    /// @notice The mark this block's price-move limit is measured from.
    function blockReferenceMark() public view returns (uint256) {
        return blockStartNumber == block.number ? blockStartMark : markPrice();
    }

    /// @notice How much of a `size` position a liquidation could unwind now without passing
    /// `bound` or the price limits (see liquidate; ignores the dust rule).
    function liquidatableSize(bool isLong, uint256 size, uint256 bound) external view returns (uint256) {
        uint256 b = baseReserve;
        uint256 q = quoteReserve;
        uint256 mark = q * WAD / b;
        return _fit(b, q, isLong, size, _limit(isLong, mark, blockReferenceMark(), bound));
    }

    /// @notice Quote paid to (positive) or by (negative) traders if a net base position of
    /// `netBase` (positive: net long) were unwound now. Every open position closed, in any order,
    /// moves the reserves exactly this way (the curve is path independent).
    function unwindValue(int256 netBase) external view returns (int256) {
        if (netBase == 0) return 0;
        uint256 b = baseReserve;
        uint256 q = quoteReserve;
        uint256 k = b * q;
        if (netBase > 0) return int256(q - Math.ceilDiv(k, b + uint256(netBase)));
        uint256 n = uint256(-netBase);
        if (n >= b) return type(int256).min; // cannot be bought back: unbounded
        return -int256(Math.ceilDiv(k, b - n) - q);
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

    /// Reserves, the mark before this trade, this block's reference mark (recorded at the
    /// block's first trade), and the mark accumulated up to now.
    function _begin() private returns (uint256 b, uint256 q, uint256 mark, uint256 start) {
        b = baseReserve;
        q = quoteReserve;
        mark = q * WAD / b;
        uint256 last = lastTimestamp;
        if (block.timestamp > last) {
            priceCumulativeLast = uint192(priceCumulativeLast + mark * (block.timestamp - last));
            lastTimestamp = uint64(block.timestamp);
        }
        if (blockStartNumber != block.number) {
            blockStartMark = uint128(mark);
            blockStartNumber = uint64(block.number);
            start = mark;
        } else {
            start = blockStartMark;
        }
    }

    function _store(uint256 nb, uint256 nq) private returns (uint256 markAfter) {
        if (nb > type(uint112).max || nq > type(uint112).max) revert InvalidReserves();
        baseReserve = uint128(nb);
        quoteReserve = uint128(nq);
        markAfter = nq * WAD / nb;
    }

    function _checkMove(uint256 from, uint256 to, uint256 limit, bool perBlock) private pure {
        uint256 move = (to > from ? to - from : from - to) * WAD / from;
        if (move > limit) {
            if (perBlock) revert BlockPriceMoveTooHigh(move, limit);
            revert PriceImpactTooHigh(move, limit);
        }
    }

    /// The tightest mark a liquidation may reach: selling (a long) may not push the mark below
    /// the highest floor; buying back (a short) may not push it above the lowest ceiling.
    function _limit(bool isLong, uint256 mark, uint256 start, uint256 bound) private view returns (uint256 p) {
        uint256 impact = maxPriceImpact;
        uint256 perBlock = maxPriceMovePerBlock;
        if (isLong) {
            p = mark * (WAD - impact) / WAD;
            uint256 f = start * (WAD - perBlock) / WAD;
            if (f > p) p = f;
            if (bound > p) p = bound;
        } else {
            p = Math.mulDiv(mark, WAD + impact, WAD);
            uint256 c = Math.mulDiv(start, WAD + perBlock, WAD);
            if (c < p) p = c;
            if (bound != 0 && bound < p) p = bound;
        }
    }

    /// The largest base amount (<= size) whose unwind leaves the mark at or beyond `limit`:
    /// mark = k / b^2 (WAD-scaled), so selling may raise b to sqrt(k / floor), buying back may
    /// lower it to sqrt(k / ceiling).
    function _fit(uint256 b, uint256 q, bool isLong, uint256 size, uint256 limit) private pure returns (uint256) {
        if (limit == 0) return size;
        uint256 kw = Math.mulDiv(b * q, WAD, limit);
        if (isLong) {
            uint256 maxB = Math.sqrt(kw);
            if (maxB <= b) return 0;
            return maxB - b < size ? maxB - b : size;
        }
        uint256 minB = Math.sqrt(kw, Math.Rounding.Ceil) + 1; // + 1: the quote reserve rounds up
        if (minB >= b) return 0;
        return b - minB < size ? b - minB : size;
    }

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
        if (feeRatio_ > 0.1e18 || maxPriceImpact_ == 0 || maxPriceImpact_ > 0.5e18) revert InvalidParams();
        feeRatio = uint64(feeRatio_);
        maxPriceImpact = uint64(maxPriceImpact_);
        emit ParamsUpdated(feeRatio_, maxPriceImpact_);
    }

    function _setBlockLimit(uint256 limit) private {
        if (limit == 0 || limit > 0.5e18) revert InvalidParams();
        maxPriceMovePerBlock = uint64(limit);
        emit BlockPriceMoveLimitUpdated(limit);
    }
}
