// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";

/// The second review's self-liquidation, kept as a regression: with the oracle standing still,
/// an attacker opens longs B whose index margin sits at the maintenance margin, lets funding
/// (paid to its own shorts) tip them under, depresses the mark with its shorts and liquidates B
/// as low as it can, hoping the insurance fund pays B's loss beyond its collateral while the
/// shorts collect it. A liquidation now never pushes the mark below the price where B's equity
/// would fall under its penalty while the index keeps B above it: the insurance fund pays
/// nothing and the attacker ends poorer.
contract SelfLiquidationTest is Fixture {
    address internal attacker = address(0xA77AC4);
    uint256[] internal shorts;
    uint256[] internal longs;
    uint256[] internal bs;
    uint256 internal constant LEV = 20e18;
    uint256 internal floor_ = 1900e18; // index * (1 - maxSpread)

    function setUp() public override {
        super.setUp();
        for (uint256 i; i < 30; ++i) _fund(attacker, 1_000_000e18);
        vm.roll(block.number + 1);
    }

    function _next() internal {
        vm.roll(block.number + 1);
        vm.warp(block.timestamp + 12);
    }

    /// margin - maintenance at the index for a 20x long of collateral c opened now
    function _slack(uint256 c) internal view returns (int256) {
        uint256 notional = c * LEV / WAD;
        (uint256 size,,,) = ethAmm.quoteOpen(true, notional);
        uint256 entry = notional * WAD / size;
        int256 pnl = (int256(2000e18) - int256(entry)) * int256(size) / 1e18;
        uint256 mm = size * 2000e18 / WAD * 0.025e18 / WAD;
        return int256(c) + pnl - int256(mm);
    }

    /// the largest collateral whose 20x long just passes the open check (margin ~= maintenance)
    function _tightCollateral(uint256 hi) internal view returns (uint256 lo) {
        lo = 1_000e18;
        require(_slack(lo) >= 0, "lo");
        while (hi - lo > 1) {
            uint256 mid = (lo + hi) / 2;
            if (_slack(mid) >= 0) lo = mid;
            else hi = mid;
        }
    }

    function _tryOpen(bool isLong, uint256 c, uint256 lev) internal returns (uint256 id) {
        vm.prank(attacker);
        try pm.openPosition(ETH, isLong, c, lev, 0) returns (uint256 t) {
            id = t;
        } catch {}
    }

    function _tryClose(uint256 id) internal returns (bool ok) {
        if (_pos(id).size == 0) return true;
        vm.prank(attacker);
        try pm.closePosition(id, 0) {
            ok = true;
        } catch {}
    }

    function _run(uint256 nB) internal {
        uint256 capital = vault.freeCollateral(attacker);
        uint256 ins0 = vault.insuranceFund();
        uint256 liq0 = vault.liquidity();
        uint256 t0 = block.timestamp;

        // 1. push the mark ~2% up (A), then open B (20x, margin == maintenance at the index);
        //    repeat nB times, re-centering the mark with a short each round
        longs.push(_tryOpen(true, 1_000_000e18, 2e18));
        _next();
        for (uint256 i; i < nB; ++i) {
            uint256 c = _tightCollateral(120_000e18);
            vm.prank(attacker);
            bs.push(pm.openPosition(ETH, true, c, LEV, 0));
            _next();
            if (i + 1 < nB) {
                // bring the mark back down to ~2040 for the next B
                while (pm.markPrice(ETH) > 2041e18) {
                    uint256 s = _tryOpen(false, 300_000e18, 2e18);
                    if (s == 0) break;
                    shorts.push(s);
                }
                _next();
            }
        }
        emit log_named_uint("B positions", bs.length);
        emit log_named_uint("mark after B", pm.markPrice(ETH));
        for (uint256 i; i < bs.length; ++i) assertTrue(!pm.isPositionLiquidatable(bs[i]), "B healthy at open");

        // 2. just before the first funding update, depress the mark to ~1905 with 2x shorts of 500k
        vm.warp(t0 + 8 hours - 120);
        while (pm.markPrice(ETH) > floor_ + 5e18) {
            uint256 s = _tryOpen(false, 250_000e18, 2e18);
            if (s == 0) {
                _next();
                continue;
            }
            shorts.push(s);
        }
        vm.warp(t0 + 8 hours);
        vm.roll(block.number + 1);
        pm.updateFundingRate(ETH); // positive: the mark was above the index for most of the interval
        emit log_named_int("funding rate", pm.fundingRate(ETH));
        vm.warp(block.timestamp + 12);
        for (uint256 i; i < bs.length; ++i) assertTrue(pm.isPositionLiquidatable(bs[i]), "B liquidatable by funding");
        emit log_named_uint("mark before liquidations", pm.markPrice(ETH));

        // 3. each block: buy back one short chunk (mark up ~0.5%), liquidate B down to the band floor
        uint256 k = shorts.length;
        uint256 rounds;
        for (uint256 j; j < bs.length; ++j) {
            while (_pos(bs[j]).size != 0 && pm.isPositionLiquidatable(bs[j])) {
                _next();
                ++rounds;
                if (pm.markPrice(ETH) < floor_ + 10e18 && k > 0) {
                    --k;
                    require(_tryClose(shorts[k]), "close short");
                }
                vm.prank(attacker);
                try pm.liquidatePosition(bs[j]) {} catch {}
                if (rounds > 120) break; // the attacker's own shorts hold the liquidation back
            }
        }
        emit log_named_uint("liquidation rounds", rounds);
        emit log_named_uint("insurance after liquidations", vault.insuranceFund());

        // 4. unwind everything else
        bool left = true;
        uint256 guard;
        while (left) {
            _next();
            require(++guard < 200, "cannot unwind");
            left = false;
            for (uint256 i; i < bs.length; ++i) if (!_tryClose(bs[i])) left = true;
            for (uint256 i; i < shorts.length; ++i) if (!_tryClose(shorts[i])) left = true;
            for (uint256 i; i < longs.length; ++i) if (!_tryClose(longs[i])) left = true;
        }
        uint256 end = vault.freeCollateral(attacker);
        emit log_named_uint("elapsed seconds", block.timestamp - t0);
        emit log_named_int("attacker profit", int256(end) - int256(capital));
        emit log_named_int("insurance change", int256(uint256(vault.insuranceFund())) - int256(ins0));
        emit log_named_int("liquidity change", int256(uint256(vault.liquidity())) - int256(liq0));
        emit log_named_uint("bad debt", vault.badDebt());
        emit log_named_uint("mark end", pm.markPrice(ETH));
        assertEq(oracle.getIndexPrice(ETH), 2000e18, "the oracle never moved");
        assertEq(vault.openInterest(), 0, "every position gone: open interest back to 0");
        (,,,, uint256 ls, uint256 ss) = pm.marketState(ETH);
        assertEq(ls + ss, 0, "exposure aggregates back to 0 (no drift from partial liquidations)");
        assertEq(pm.traderPnl(), 0, "traderPnl 0");
        assertLe(end, capital, "the attacker is not richer");
        assertGe(vault.insuranceFund(), ins0, "the insurance fund did not pay");
        assertEq(vault.badDebt(), 0, "no bad debt");
        _assertSolvent();
    }

    function test_selfLiquidation_oneB() public {
        _run(1);
    }

    function test_selfLiquidation_tenB() public {
        _run(10);
    }

    event log_named_int(string key, int256 val);
    event log_named_uint(string key, uint256 val);
}
