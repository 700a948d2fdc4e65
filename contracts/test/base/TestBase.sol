// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {HevmUser} from "./Hevm.sol";

/// @notice A tiny test base: forge runs every `test*` / `invariant*` function and a test fails
/// when it reverts, so every assertion reverts with a readable message.
abstract contract TestBase is HevmUser {
    bool public IS_TEST = true;

    // ---------------------------------------------------------------- invariant targeting
    struct FuzzSelector {
        address addr;
        bytes4[] selectors;
    }

    address[] private _targetContracts;
    FuzzSelector[] private _targetSelectors;
    address[] private _targetSenders;

    function targetContracts() public view returns (address[] memory) {
        return _targetContracts;
    }

    function targetSelectors() public view returns (FuzzSelector[] memory) {
        return _targetSelectors;
    }

    function targetSenders() public view returns (address[] memory) {
        return _targetSenders;
    }

    function targetContract(address a) internal {
        _targetContracts.push(a);
    }

    function targetSelector(FuzzSelector memory s) internal {
        _targetSelectors.push(s);
    }

    function targetSender(address a) internal {
        _targetSenders.push(a);
    }

    // ---------------------------------------------------------------- assertions
    function fail(string memory why) internal pure {
        revert(why);
    }

    function assertTrue(bool c, string memory why) internal pure {
        if (!c) revert(why);
    }

    function assertFalse(bool c, string memory why) internal pure {
        if (c) revert(why);
    }

    function assertEq(uint256 a, uint256 b, string memory why) internal pure {
        if (a != b) revert(string.concat(why, ": ", vm.toString(a), " != ", vm.toString(b)));
    }

    function assertEq(int256 a, int256 b, string memory why) internal pure {
        if (a != b) revert(string.concat(why, ": ", vm.toString(a), " != ", vm.toString(b)));
    }

    function assertEq(address a, address b, string memory why) internal pure {
        if (a != b) revert(string.concat(why, ": ", vm.toString(a), " != ", vm.toString(b)));
    }

    function assertEq(bytes32 a, bytes32 b, string memory why) internal pure {
        if (a != b) revert(string.concat(why, ": ", vm.toString(a), " != ", vm.toString(b)));
    }

    function assertEq(bool a, bool b, string memory why) internal pure {
        if (a != b) revert(string.concat(why, a ? ": true != false" : ": false != true"));
    }

    function assertEq(string memory a, string memory b, string memory why) internal pure {
        if (keccak256(bytes(a)) != keccak256(bytes(b))) revert(string.concat(why, ": '", a, "' != '", b, "'"));
    }

    function assertGt(uint256 a, uint256 b, string memory why) internal pure {
        if (a <= b) revert(string.concat(why, ": ", vm.toString(a), " <= ", vm.toString(b)));
    }

    function assertGe(uint256 a, uint256 b, string memory why) internal pure {
        if (a < b) revert(string.concat(why, ": ", vm.toString(a), " < ", vm.toString(b)));
    }

    function assertLt(uint256 a, uint256 b, string memory why) internal pure {
        if (a >= b) revert(string.concat(why, ": ", vm.toString(a), " >= ", vm.toString(b)));
    }

    function assertLe(uint256 a, uint256 b, string memory why) internal pure {
        if (a > b) revert(string.concat(why, ": ", vm.toString(a), " > ", vm.toString(b)));
    }

    function assertGe(int256 a, int256 b, string memory why) internal pure {
        if (a < b) revert(string.concat(why, ": ", vm.toString(a), " < ", vm.toString(b)));
    }

    function assertLe(int256 a, int256 b, string memory why) internal pure {
        if (a > b) revert(string.concat(why, ": ", vm.toString(a), " > ", vm.toString(b)));
    }

    function assertGt(int256 a, int256 b, string memory why) internal pure {
        if (a <= b) revert(string.concat(why, ": ", vm.toString(a), " <= ", vm.toString(b)));
    }

    function assertLt(int256 a, int256 b, string memory why) internal pure {
        if (a >= b) revert(string.concat(why, ": ", vm.toString(a), " >= ", vm.toString(b)));
    }

    function assertApproxEq(uint256 a, uint256 b, uint256 tol, string memory why) internal pure {
        uint256 d = a > b ? a - b : b - a;
        if (d > tol) revert(string.concat(why, ": ", vm.toString(a), " !~ ", vm.toString(b)));
    }

    function assertApproxEq(int256 a, int256 b, uint256 tol, string memory why) internal pure {
        uint256 d = a > b ? uint256(a - b) : uint256(b - a);
        if (d > tol) revert(string.concat(why, ": ", vm.toString(a), " !~ ", vm.toString(b)));
    }

    // ---------------------------------------------------------------- fuzz helpers
    /// Map x into [lo, hi] (inclusive) without discarding runs.
    function bound(uint256 x, uint256 lo, uint256 hi) internal pure returns (uint256) {
        require(lo <= hi, "bound: lo > hi");
        if (x >= lo && x <= hi) return x;
        uint256 span = hi - lo;
        if (span == type(uint256).max) return x;
        return lo + (x % (span + 1));
    }
}
