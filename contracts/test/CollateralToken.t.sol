// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {TestBase} from "./base/TestBase.sol";
import {CollateralToken} from "../src/tokens/CollateralToken.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract CollateralTokenTest is TestBase {
    CollateralToken internal token;

    function setUp() public {
        token = new CollateralToken("Virtual USDT", "vUSDT");
    }

    function test_metadata() public view {
        assertEq(token.decimals(), 18, "decimals");
        assertEq(token.symbol(), "vUSDT", "symbol");
        assertTrue(token.faucetEnabled(), "faucet on");
        assertEq(token.faucetLimit(), 1_000_000e18, "limit");
    }

    function test_faucet() public {
        vm.prank(address(0xA));
        token.faucet(500e18);
        assertEq(token.balanceOf(address(0xA)), 500e18, "dripped");
        token.faucetTo(address(0xB), 1_000_000e18);
        assertEq(token.balanceOf(address(0xB)), 1_000_000e18, "dripped to");
        vm.expectRevert(abi.encodeWithSelector(CollateralToken.FaucetLimitExceeded.selector, 1_000_001e18, 1_000_000e18));
        token.faucet(1_000_001e18);
    }

    function test_faucetDisabled() public {
        token.configureFaucet(false, 10e18);
        vm.expectRevert(CollateralToken.FaucetDisabled.selector);
        token.faucet(1);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(0xA)));
        vm.prank(address(0xA));
        token.configureFaucet(true, 10e18);
    }

    function test_mint_onlyOwner() public {
        token.mint(address(0xA), 5e18);
        assertEq(token.balanceOf(address(0xA)), 5e18, "minted");
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(0xA)));
        vm.prank(address(0xA));
        token.mint(address(0xA), 5e18);
    }
}
