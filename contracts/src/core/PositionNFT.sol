// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC721} from "@openzeppelin/contracts/token/ERC721/ERC721.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";
import {IPositionManager, IPositionNFTEvents} from "../interfaces/IPerpEx.sol";

/// @title PositionNFT: one soulbound ERC-721 token per open position.
/// @notice Minted and burned only by the PositionManager. Every transfer and approval path
/// reverts with `Soulbound()`. `positionOf` returns the position's data from the PositionManager.
contract PositionNFT is ERC721, Ownable2Step, IPositionNFTEvents {
    error Soulbound();
    error OnlyPositionManager();
    error PositionManagerAlreadySet();
    error ZeroAddress();

    event PositionManagerSet(address positionManager);

    // slot: wiring + counter
    address public positionManager;
    uint96 public totalMinted; // token ids are 1..totalMinted

    constructor() ERC721("Perp-EX Position", "PEXP") Ownable(msg.sender) {}

    modifier onlyPositionManager() {
        if (msg.sender != positionManager) revert OnlyPositionManager();
        _;
    }

    function setPositionManager(address pm) external onlyOwner {
        if (pm == address(0)) revert ZeroAddress();
        if (positionManager != address(0)) revert PositionManagerAlreadySet();
        positionManager = pm;
        emit PositionManagerSet(pm);
    }

    function mint(address to, bytes32 marketId) external onlyPositionManager returns (uint256 tokenId) {
        tokenId = uint256(totalMinted) + 1;
        totalMinted = uint96(tokenId);
        _mint(to, tokenId);
        emit PositionMinted(tokenId, to, marketId);
    }

    function burn(uint256 tokenId, bytes32 marketId) external onlyPositionManager {
        address owner = _ownerOf(tokenId);
        _burn(tokenId);
        emit PositionBurned(tokenId, owner, marketId);
    }

    /// @notice The position's data (zeroed struct if the token does not exist).
    function positionOf(uint256 tokenId) external view returns (IPositionManager.Position memory) {
        return IPositionManager(positionManager).getPosition(tokenId);
    }

    function exists(uint256 tokenId) external view returns (bool) {
        return _ownerOf(tokenId) != address(0);
    }

    // ---------------------------------------------------------------- soulbound

    function approve(address, uint256) public pure override {
        revert Soulbound();
    }

    function setApprovalForAll(address, bool) public pure override {
        revert Soulbound();
    }

    function transferFrom(address, address, uint256) public pure override {
        revert Soulbound();
    }

    function safeTransferFrom(address, address, uint256, bytes memory) public pure override {
        revert Soulbound();
    }

    /// Defence in depth: the only state changes allowed are mint (from 0) and burn (to 0).
    function _update(address to, uint256 tokenId, address auth) internal override returns (address) {
        if (to != address(0) && _ownerOf(tokenId) != address(0)) revert Soulbound();
        return super._update(to, tokenId, auth);
    }
}
