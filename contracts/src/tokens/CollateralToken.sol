// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {ERC20} from "@openzeppelin/contracts/token/ERC20/ERC20.sol";
import {Ownable, Ownable2Step} from "@openzeppelin/contracts/access/Ownable2Step.sol";

/// @title vUSDT: the Perp-EX test collateral token (18 decimals) with a faucet for local chains.
contract CollateralToken is ERC20, Ownable2Step {
    error FaucetDisabled();
    error FaucetLimitExceeded(uint256 requested, uint256 limit);

    event FaucetConfigured(bool enabled, uint256 limitPerCall);
    event FaucetDrip(address indexed to, uint256 amount);

    bool public faucetEnabled = true;
    uint256 public faucetLimit = 1_000_000e18;

    constructor(string memory name_, string memory symbol_) ERC20(name_, symbol_) Ownable(msg.sender) {}

    /// @notice Mint up to `faucetLimit` tokens to the caller (local / test chains only).
    function faucet(uint256 amount) external {
        _drip(msg.sender, amount);
    }

    /// @notice Mint up to `faucetLimit` tokens to `to`.
    function faucetTo(address to, uint256 amount) external {
        _drip(to, amount);
    }

    function mint(address to, uint256 amount) external onlyOwner {
        _mint(to, amount);
    }

    function configureFaucet(bool enabled, uint256 limitPerCall) external onlyOwner {
        faucetEnabled = enabled;
        faucetLimit = limitPerCall;
        emit FaucetConfigured(enabled, limitPerCall);
    }

    function _drip(address to, uint256 amount) private {
        if (!faucetEnabled) revert FaucetDisabled();
        if (amount > faucetLimit) revert FaucetLimitExceeded(amount, faucetLimit);
        _mint(to, amount);
        emit FaucetDrip(to, amount);
    }
}
