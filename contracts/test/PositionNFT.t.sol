// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {IPositionManager} from "../src/interfaces/IPerpEx.sol";
import {PositionNFT} from "../src/core/PositionNFT.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

contract PositionNFTTest is Fixture {
    uint256 internal id;

    function setUp() public override {
        super.setUp();
        _fund(alice, 10_000e18);
        id = _open(alice, ETH, true, 1_000e18, 5e18);
    }

    function test_metadata() public view {
        assertEq(nft.name(), "Perp-EX Position", "name");
        assertEq(nft.symbol(), "PEXP", "symbol");
        assertEq(nft.positionManager(), address(pm), "pm");
        assertTrue(nft.exists(id), "exists");
        assertFalse(nft.exists(id + 1), "not exists");
    }

    function test_positionOf() public view {
        IPositionManager.Position memory a = nft.positionOf(id);
        IPositionManager.Position memory b = pm.getPosition(id);
        assertEq(a.size, b.size, "size");
        assertEq(a.marketId, b.marketId, "market");
        assertEq(a.collateral, b.collateral, "collateral");
        assertEq(a.entryPrice, b.entryPrice, "entry");
    }

    function test_cannotMove_transferFrom() public {
        vm.expectRevert(PositionNFT.Soulbound.selector);
        vm.prank(alice);
        nft.transferFrom(alice, bob, id);
    }

    function test_cannotMove_safeTransferFrom() public {
        vm.expectRevert(PositionNFT.Soulbound.selector);
        vm.prank(alice);
        nft.safeTransferFrom(alice, bob, id);
        vm.expectRevert(PositionNFT.Soulbound.selector);
        vm.prank(alice);
        nft.safeTransferFrom(alice, bob, id, "");
    }

    function test_cannotApprove() public {
        vm.expectRevert(PositionNFT.Soulbound.selector);
        vm.prank(alice);
        nft.approve(bob, id);
        vm.expectRevert(PositionNFT.Soulbound.selector);
        vm.prank(alice);
        nft.setApprovalForAll(bob, true);
        assertEq(nft.getApproved(id), address(0), "no approval");
        assertFalse(nft.isApprovedForAll(alice, bob), "no operator");
        assertEq(nft.ownerOf(id), alice, "still alice");
    }

    function test_mintBurn_onlyPositionManager() public {
        vm.expectRevert(PositionNFT.OnlyPositionManager.selector);
        nft.mint(alice, ETH);
        vm.expectRevert(PositionNFT.OnlyPositionManager.selector);
        nft.burn(id, ETH);
        vm.prank(alice);
        vm.expectRevert(PositionNFT.OnlyPositionManager.selector);
        nft.burn(id, ETH);
    }

    function test_mintBurn_byPositionManager() public {
        vm.prank(address(pm));
        vm.expectEmit(true, true, true, true, address(nft));
        emit PositionMinted(2, bob, BTC);
        uint256 t = nft.mint(bob, BTC);
        assertEq(t, 2, "next id");
        assertEq(nft.ownerOf(t), bob, "owner");
        vm.prank(address(pm));
        vm.expectEmit(true, true, true, true, address(nft));
        emit PositionBurned(t, bob, BTC);
        nft.burn(t, BTC);
        assertFalse(nft.exists(t), "burned");
        assertEq(nft.totalMinted(), 2, "ids are not reused");
    }

    function test_setPositionManager() public {
        vm.expectRevert(PositionNFT.PositionManagerAlreadySet.selector);
        nft.setPositionManager(address(1));
        PositionNFT fresh = new PositionNFT();
        vm.expectRevert(PositionNFT.ZeroAddress.selector);
        fresh.setPositionManager(address(0));
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, alice));
        vm.prank(alice);
        fresh.setPositionManager(alice);
    }
}
