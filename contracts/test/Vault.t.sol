// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestBase} from "./base/TestBase.sol";
import {Vault} from "../src/core/Vault.sol";
import {CollateralToken} from "../src/tokens/CollateralToken.sol";
import {IERC20} from "@openzeppelin/contracts/token/ERC20/IERC20.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract VaultTest is TestBase {
    event Deposited(address indexed account, address indexed from, uint256 amount);
    event Withdrawn(address indexed account, uint256 amount);

    CollateralToken internal token;
    Vault internal vault;
    address internal pmAddr = address(0x9A);
    address internal alice = address(0xA11CE);
    address internal bob = address(0xB0B);

    function setUp() public {
        token = new CollateralToken("Virtual USDT", "vUSDT");
        vault = new Vault(IERC20(address(token)), 0.8e18);
        vault.setPositionManager(pmAddr);
        token.mint(address(this), 1_000_000e18);
        token.approve(address(vault), type(uint256).max);
        vault.addLiquidity(100_000e18);
        vault.fundInsurance(10_000e18);
        vm.startPrank(alice);
        token.faucet(10_000e18);
        token.approve(address(vault), type(uint256).max);
        vm.stopPrank();
    }

    function _solvent() internal view {
        assertEq(token.balanceOf(address(vault)), vault.totalAccounted(), "balance == buckets");
    }

    function test_depositWithdraw() public {
        vm.expectEmit(true, true, false, true, address(vault));
        emit Deposited(alice, alice, 4_000e18);
        vm.prank(alice);
        vault.deposit(4_000e18);
        assertEq(vault.freeCollateral(alice), 4_000e18, "free");
        assertEq(vault.totalFree(), 4_000e18, "total free");
        vm.expectEmit(true, false, false, true, address(vault));
        emit Withdrawn(alice, 1_500e18);
        vm.prank(alice);
        vault.withdraw(1_500e18);
        assertEq(vault.freeCollateral(alice), 2_500e18, "free after");
        assertEq(token.balanceOf(alice), 7_500e18, "tokens back");
        _solvent();
    }

    function test_depositFor() public {
        vm.expectEmit(true, true, false, true, address(vault));
        emit Deposited(bob, alice, 100e18);
        vm.prank(alice);
        vault.depositFor(bob, 100e18);
        assertEq(vault.freeCollateral(bob), 100e18, "credited to bob");
        vm.expectRevert(Vault.ZeroAddress.selector);
        vm.prank(alice);
        vault.depositFor(address(0), 1e18);
    }

    function test_deposit_withdraw_reverts() public {
        vm.expectRevert(Vault.ZeroAmount.selector);
        vm.prank(alice);
        vault.deposit(0);
        vm.expectRevert(Vault.ZeroAmount.selector);
        vm.prank(alice);
        vault.withdraw(0);
        vm.prank(alice);
        vault.deposit(100e18);
        vm.expectRevert(abi.encodeWithSelector(Vault.InsufficientFreeCollateral.selector, 100e18, 101e18));
        vm.prank(alice);
        vault.withdraw(101e18);
        vm.expectPartialRevert(bytes4(keccak256("ERC20InsufficientBalance(address,uint256,uint256)")));
        vm.prank(alice);
        vault.deposit(1_000_000e18);
    }

    function test_positionManagerHooks_onlyPositionManager() public {
        bytes memory err = abi.encodeWithSelector(Vault.OnlyPositionManager.selector);
        vm.expectRevert(err);
        vault.openPosition(alice, 1, 0, 1, int256(uint256(1)));
        vm.expectRevert(err);
        vault.lockMargin(alice, 1);
        vm.expectRevert(err);
        vault.releaseMargin(alice, 1);
        vm.expectRevert(err);
        vault.settleFunding(1);
        vm.expectRevert(err);
        vault.settlePosition(Vault.Settlement(alice, 1, 1, 1, 0, 0, address(0), 0, 1, -int256(uint256(1)), 0));
    }

    function test_openAndSettleFlows() public {
        vm.prank(alice);
        vault.deposit(5_000e18);
        vm.startPrank(pmAddr);
        vault.openPosition(alice, 1_000e18, 5e18, 10_000e18, int256(uint256(10_000e18)));
        assertEq(vault.totalLocked(), 1_000e18, "locked");
        assertEq(vault.insuranceFund(), 10_005e18, "fee");
        assertEq(vault.openInterest(), 10_000e18, "oi");
        vault.lockMargin(alice, 500e18);
        vault.releaseMargin(alice, 200e18);
        assertEq(vault.totalLocked(), 1_300e18, "locked after margin moves");
        vault.settleFunding(30e18); // pays 30 into the funding buffer
        vault.settleFunding(-10e18); // receives 10 from it
        assertEq(vault.totalLocked(), 1_280e18, "locked after funding");
        assertEq(vault.liquidity(), 100_000e18, "the pool is no funding counterparty");
        assertEq(vault.fundingBuffer(), int256(20e18), "buffer");
        // close with +220 PnL: equity 1,500, fee 2, payout 1,498
        vault.settlePosition(Vault.Settlement(alice, 1_280e18, 1_500e18, 1_498e18, 0, 2e18, address(0), 0, 10_000e18, -int256(uint256(10_000e18)), 0));
        vm.stopPrank();
        assertEq(vault.totalLocked(), 0, "released");
        assertEq(vault.openInterest(), 0, "oi");
        assertEq(vault.liquidity(), 100_000e18 - 220e18, "pool paid the profit");
        assertEq(vault.freeCollateral(alice), 5_000e18 - 1_005e18 - 500e18 + 200e18 + 1_498e18, "free");
        _solvent();
    }

    function test_settlePosition_rejectsInconsistentPayouts() public {
        vm.prank(alice);
        vault.deposit(5_000e18);
        vm.startPrank(pmAddr);
        vault.openPosition(alice, 1_000e18, 0, 1_000e18, int256(uint256(1_000e18)));
        vm.expectRevert(Vault.InvalidSettlement.selector); // owner underpaid
        vault.settlePosition(Vault.Settlement(alice, 1_000e18, 900e18, 800e18, 0, 0, address(0), 0, 1_000e18, -int256(uint256(1_000e18)), 0));
        vm.expectRevert(Vault.InvalidSettlement.selector); // owner overpaid
        vault.settlePosition(Vault.Settlement(alice, 1_000e18, 900e18, 901e18, 0, 0, address(0), 0, 1_000e18, -int256(uint256(1_000e18)), 0));
        vm.expectRevert(Vault.InvalidSettlement.selector); // payout despite a shortfall
        vault.settlePosition(Vault.Settlement(alice, 1_000e18, -5e18, 1e18, 0, 0, address(0), 0, 1_000e18, -int256(uint256(1_000e18)), 0));
        vm.stopPrank();
    }

    function test_utilizationLimit() public {
        vm.prank(alice);
        vault.deposit(5_000e18);
        assertEq(vault.availableOpenInterest(), 80_000e18, "80% of liquidity");
        vm.prank(pmAddr);
        vm.expectRevert(abi.encodeWithSelector(Vault.UtilizationExceeded.selector, 80_001e18, 80_000e18));
        vault.openPosition(alice, 100e18, 0, 80_001e18, int256(uint256(80_001e18)));
        vm.prank(pmAddr);
        vault.openPosition(alice, 100e18, 0, 80_000e18, int256(uint256(80_000e18)));
        assertEq(vault.utilization(), 0.8e18, "utilization");
        uint256 shares = vault.sharesOf(address(this));
        vm.expectPartialRevert(Vault.InsufficientLiquidity.selector);
        vault.removeLiquidity(shares / 100_000, address(this)); // about 1 vUSDT
    }

    function test_liquidityShares_mintAndRedeemAtPoolValue() public {
        uint256 mine = vault.sharesOf(address(this));
        assertEq(vault.totalShares(), mine, "the seed holds every share");
        // bob adds 50k: shares in proportion
        token.mint(bob, 50_000e18);
        vm.startPrank(bob);
        token.approve(address(vault), type(uint256).max);
        uint256 bobShares = vault.addLiquidity(50_000e18);
        vm.stopPrank();
        assertApproxEq(bobShares * 2, mine, mine / 1e12, "half as many shares for half the money");
        assertEq(vault.liquidity(), 150_000e18, "pooled");
        // the pool earns 30k (a trader's loss): every share is worth 20% more
        vm.prank(alice);
        vault.deposit(1_000e18);
        vm.startPrank(pmAddr);
        vault.openPosition(alice, 1_000e18, 0, 1_000e18, int256(uint256(1_000e18)));
        vault.settleFunding(30_000e18 - 30_000e18); // no-op, keeps the hook exercised
        vm.stopPrank();
        // anyone may take their part; only their part
        vm.prank(bob);
        uint256 out = vault.removeLiquidity(bobShares, bob);
        assertApproxEq(out, 50_000e18, 1e6, "bob's part back");
        assertEq(token.balanceOf(bob), out, "paid");
        vm.expectRevert(abi.encodeWithSelector(Vault.InsufficientShares.selector, 0, 1));
        vm.prank(bob);
        vault.removeLiquidity(1, bob);
        vm.expectRevert(Vault.ZeroAmount.selector);
        vault.removeLiquidity(0, bob);
        vm.expectRevert(Vault.ZeroAddress.selector);
        vault.removeLiquidity(1, address(0));
        vm.expectRevert(Vault.ZeroAmount.selector);
        vault.addLiquidity(0);
        _solvent();
    }

    /// The owner cannot take the insurance fund at once: a withdrawal is announced and may be
    /// executed only after the delay, exactly as announced.
    function test_insuranceWithdrawal_isTimelocked() public {
        vm.expectRevert(abi.encodeWithSelector(Vault.WithdrawalNotAnnounced.selector, 4_000e18, bob));
        vault.withdrawInsurance(4_000e18, bob);
        vault.announceInsuranceWithdrawal(4_000e18, bob);
        uint256 due = block.timestamp + vault.INSURANCE_WITHDRAWAL_DELAY();
        vm.expectRevert(abi.encodeWithSelector(Vault.WithdrawalTooEarly.selector, due));
        vault.withdrawInsurance(4_000e18, bob);
        vm.warp(due);
        vm.expectRevert(abi.encodeWithSelector(Vault.WithdrawalNotAnnounced.selector, 4_000e18, alice));
        vault.withdrawInsurance(4_000e18, alice);
        vault.withdrawInsurance(4_000e18, bob);
        assertEq(token.balanceOf(bob), 4_000e18, "paid");
        assertEq(vault.insuranceFund(), 6_000e18, "insurance");
        vm.expectRevert(abi.encodeWithSelector(Vault.WithdrawalNotAnnounced.selector, 4_000e18, bob));
        vault.withdrawInsurance(4_000e18, bob); // once
        vault.announceInsuranceWithdrawal(6_001e18, bob);
        vm.warp(block.timestamp + vault.INSURANCE_WITHDRAWAL_DELAY());
        vm.expectRevert(abi.encodeWithSelector(Vault.InsufficientInsurance.selector, 6_000e18, 6_001e18));
        vault.withdrawInsurance(6_001e18, bob);
        vm.expectRevert(Vault.ZeroAddress.selector);
        vault.announceInsuranceWithdrawal(1, address(0));
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        vm.prank(alice);
        vault.announceInsuranceWithdrawal(1, alice);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        vm.prank(alice);
        vault.withdrawInsurance(1, alice);
        _solvent();
    }

    function test_partialSettlement_keepsTheRestLocked() public {
        vm.prank(alice);
        vault.deposit(5_000e18);
        vm.startPrank(pmAddr);
        vault.openPosition(alice, 1_000e18, 0, 10_000e18, int256(uint256(10_000e18)));
        // half unwound at a 300 loss, penalty 100 (50 keeper, 50 insurance): 550 stays locked
        vault.settlePosition(Vault.Settlement(alice, 1_000e18, 700e18, 0, 600e18, 50e18, bob, 50e18, 5_000e18, -int256(uint256(5_000e18)), 0));
        vm.stopPrank();
        assertEq(vault.totalLocked(), 600e18, "the rest stays locked");
        assertEq(vault.openInterest(), 5_000e18, "half the open interest left");
        assertEq(vault.freeCollateral(bob), 50e18, "keeper");
        assertEq(vault.liquidity(), 100_300e18, "the loss to the pool");
        vm.prank(pmAddr);
        vm.expectRevert(Vault.InvalidSettlement.selector); // keeps collateral despite a shortfall
        vault.settlePosition(Vault.Settlement(alice, 600e18, -5e18, 0, 1e18, 0, bob, 0, 1_000e18, -int256(uint256(1_000e18)), 0));
        _solvent();
    }

    function test_poolShortfallFallsBackToInsurance() public {
        vm.prank(alice);
        vault.deposit(1_000e18);
        vm.startPrank(pmAddr);
        vault.openPosition(alice, 100e18, 0, 1_000e18, int256(1_000e18));
        // a profit the pool cannot pay: the insurance fund pays the rest
        uint256 liq = vault.liquidity();
        uint256 ins = vault.insuranceFund();
        uint256 equity = 100e18 + liq + 2e18;
        vault.settlePosition(
            Vault.Settlement(alice, 100e18, int256(equity), equity, 0, 0, address(0), 0, 1_000e18, -1_000e18, 0)
        );
        vm.stopPrank();
        assertEq(vault.liquidity(), 0, "pool empty");
        assertEq(vault.insuranceFund(), ins - 2e18, "insurance paid the rest");
        _solvent();
    }

    /// Funding receivers may settle before payers: the buffer lends from the pool's tokens, and
    /// the pool keeps that much back from liquidity providers.
    function test_fundingBufferLendsFromThePoolAndThePoolKeepsItBack() public {
        vm.prank(alice);
        vault.deposit(1_000e18);
        vm.startPrank(pmAddr);
        vault.openPosition(alice, 100e18, 0, 1_000e18, int256(1_000e18));
        vault.settleFunding(-3e18); // a receiver settles first
        vm.stopPrank();
        assertEq(vault.fundingBuffer(), -3e18, "lent");
        assertEq(vault.withdrawableLiquidity(), vault.liquidity() - 1_250e18 - 3e18, "kept back");
        vm.prank(pmAddr);
        vault.settleFunding(3e18); // the payer
        assertEq(vault.fundingBuffer(), int256(0), "repaid");
        _solvent();
    }

    function test_admin_setters() public {
        vm.expectRevert(Vault.PositionManagerAlreadySet.selector);
        vault.setPositionManager(address(1));
        Vault v2 = new Vault(IERC20(address(token)), 0.5e18);
        vm.expectRevert(Vault.ZeroAddress.selector);
        v2.setPositionManager(address(0));
        vm.expectRevert(Vault.InvalidUtilization.selector);
        vault.setMaxUtilization(0);
        vm.expectRevert(Vault.InvalidUtilization.selector);
        vault.setMaxUtilization(10e18 + 1);
        vault.setMaxUtilization(2e18);
        assertEq(vault.maxUtilization(), 2e18, "set");
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        vm.prank(alice);
        vault.setMaxUtilization(1e18);
        vm.expectRevert(Vault.ZeroAddress.selector);
        new Vault(IERC20(address(0)), 1e18);
        assertEq(address(vault.collateralToken()), address(token), "token");
    }
}
