// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {HevmUser} from "./base/Hevm.sol";
import {PositionManager} from "../src/core/PositionManager.sol";
import {Vault} from "../src/core/Vault.sol";
import {CollateralToken} from "../src/tokens/CollateralToken.sol";

/// An attacker with two accounts and deep pockets does anything it likes inside ONE block while
/// the oracle price stands still: open and close positions of any size and side in both markets,
/// add and remove margin, liquidate anything (its own positions or other traders'), provide and
/// withdraw liquidity. Other traders' positions sit in the book.
contract OneBlockAttacker is HevmUser {
    PositionManager internal pm;
    Vault internal vault;
    CollateralToken internal token;
    bytes32[2] internal markets;

    address[2] public accounts = [address(0xA7701), address(0xA7702)];
    uint256[] public ids; // the attacker's positions (may be closed or liquidated since)
    uint256[] public victims;
    uint256 public calls;

    constructor(PositionManager pm_, Vault vault_, CollateralToken token_, bytes32[2] memory markets_) {
        pm = pm_;
        vault = vault_;
        token = token_;
        markets = markets_;
    }

    function addVictim(uint256 id) external {
        victims.push(id);
    }

    function idCount() external view returns (uint256) {
        return ids.length;
    }

    function _who(uint256 seed) internal view returns (address) {
        return accounts[seed % 2];
    }

    function _b(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        return lo + (x % (hi - lo + 1));
    }

    function _id(uint256 seed) internal view returns (uint256) {
        return ids.length == 0 ? 0 : ids[seed % ids.length];
    }

    function open(uint256 who, uint256 m, bool isLong, uint256 collateral, uint256 leverage) external {
        calls++;
        collateral = _b(collateral, 500e18, 1_500_000e18);
        leverage = _b(leverage, 1e18, 20e18);
        vm.prank(_who(who));
        try pm.openPosition(markets[m % 2], isLong, collateral, leverage, 0) returns (uint256 id) {
            ids.push(id);
        } catch {}
    }

    function close(uint256 seed) external {
        calls++;
        uint256 id = _id(seed);
        if (id == 0) return;
        address owner = pm.positionOwner(id);
        if (owner == address(0)) return;
        vm.prank(owner);
        try pm.closePosition(id, 0) {} catch {}
    }

    function reduce(uint256 seed, uint256 fraction) external {
        calls++;
        uint256 id = _id(seed);
        address owner = pm.positionOwner(id);
        if (owner == address(0)) return;
        uint256 size = pm.getPosition(id).size * _b(fraction, 1, 99) / 100;
        vm.prank(owner);
        try pm.reducePosition(id, size, 0, type(uint256).max, block.timestamp) {} catch {}
    }

    function addMargin(uint256 seed, uint256 amount) external {
        calls++;
        uint256 id = _id(seed);
        address owner = pm.positionOwner(id);
        if (owner == address(0)) return;
        vm.prank(owner);
        try pm.addMargin(id, _b(amount, 1e18, 200_000e18)) {} catch {}
    }

    function removeMargin(uint256 seed, uint256 amount) external {
        calls++;
        uint256 id = _id(seed);
        address owner = pm.positionOwner(id);
        if (owner == address(0)) return;
        vm.prank(owner);
        try pm.removeMargin(id, _b(amount, 1e18, 200_000e18)) {} catch {}
    }

    function liquidate(uint256 who, uint256 seed, bool victim) external {
        calls++;
        uint256 id = victim && victims.length != 0 ? victims[seed % victims.length] : _id(seed);
        if (id == 0) return;
        vm.prank(_who(who));
        try pm.liquidatePosition(id) {} catch {}
    }

    function addLiquidity(uint256 who, uint256 amount) external {
        calls++;
        address a = _who(who);
        amount = _b(amount, 1e18, 1_000_000e18);
        if (token.balanceOf(a) < amount) return;
        vm.prank(a);
        try vault.addLiquidity(amount) {} catch {}
    }

    function removeLiquidity(uint256 who, uint256 fraction) external {
        calls++;
        address a = _who(who);
        uint256 shares = vault.sharesOf(a) * _b(fraction, 1, 100) / 100;
        if (shares == 0) return;
        vm.prank(a);
        try vault.removeLiquidity(shares, a) {} catch {}
    }
}

contract NoProfitInvariantTest is Fixture {
    OneBlockAttacker internal attacker;
    uint256 internal startValue;
    uint256 internal constant FREE = 8_000_000e18; // per account, in the vault
    uint256 internal constant WALLET = 2_000_000e18; // per account, for liquidity

    function setUp() public override {
        super.setUp();
        attacker = new OneBlockAttacker(pm, vault, token, [ETH, BTC]);
        // other traders' positions in the book, healthy at the index
        _fund(alice, 1_000_000e18);
        _fund(bob, 1_000_000e18);
        attacker.addVictim(_open(alice, ETH, true, 20_000e18, 10e18));
        attacker.addVictim(_open(bob, ETH, false, 30_000e18, 5e18));
        attacker.addVictim(_open(alice, BTC, false, 10_000e18, 15e18));
        attacker.addVictim(_open(bob, BTC, true, 40_000e18, 3e18));
        vm.roll(block.number + 1);
        for (uint256 a; a < 2; ++a) {
            address who = attacker.accounts(a);
            for (uint256 i; i < FREE / 1_000_000e18; ++i) {
                _fund(who, 1_000_000e18);
            }
            vm.startPrank(who);
            token.faucet(1_000_000e18);
            token.faucet(1_000_000e18);
            token.approve(address(vault), type(uint256).max);
            vm.stopPrank();
            startValue += vault.freeCollateral(who) + token.balanceOf(who);
        }
        targetContract(address(attacker));
    }

    /// Everything the attacker can get out once it stops: close what closes (several passes,
    /// later blocks, the oracle still unchanged), redeem its shares; measured on a snapshot.
    function _exitValue() internal returns (uint256 value) {
        uint256 snap = vm.snapshotState();
        for (uint256 pass; pass < 6; ++pass) {
            vm.roll(block.number + 1);
            uint256 n = attacker.idCount();
            for (uint256 i; i < n; ++i) {
                uint256 id = attacker.ids(i);
                address owner = pm.positionOwner(id);
                if (owner == address(0)) continue;
                vm.prank(owner);
                try pm.closePosition(id, 0) {} catch {}
            }
        }
        for (uint256 a; a < 2; ++a) {
            address who = attacker.accounts(a);
            uint256 shares = vault.sharesOf(who);
            if (shares != 0) {
                vm.prank(who);
                try vault.removeLiquidity(shares, who) {} catch {}
            }
            value += vault.freeCollateral(who) + token.balanceOf(who);
        }
        vm.revertToState(snap);
    }

    /// No sequence of actions inside one block, with the oracle price unchanged, leaves the
    /// attacker richer than it started.
    function invariant_noProfitInOneBlockWithAStillOracle() public {
        uint256 value = _exitValue();
        assertLe(value, startValue, "the attacker ended richer");
    }

    function invariant_noBadDebt() public view {
        assertEq(vault.badDebt(), 0, "bad debt");
        _assertSolvent();
    }
}
