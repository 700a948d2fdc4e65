// SPDX-License-Identifier: Apache-2.0
pragma solidity ^0.8.24;

import {Fixture} from "./base/Fixture.sol";
import {PositionManagerBase} from "../src/core/PositionManagerBase.sol";
import {PositionManager} from "../src/core/PositionManager.sol";
import {VirtualAMM} from "../src/core/VirtualAMM.sol";
import {IGovernor} from "@openzeppelin/contracts/governance/IGovernor.sol";
import {TimelockController} from "@openzeppelin/contracts/governance/TimelockController.sol";
import {Ownable} from "@openzeppelin/contracts/access/Ownable.sol";

/// The protocol handed to a PEX Governor and its TimelockController, as Deploy.s.sol does.
contract GovernanceTest is Fixture {
    Governance internal gov;
    GovConfig internal g;
    address internal voter = address(0x70E2);

    function setUp() public override {
        super.setUp();
        g = _devGovConfig();
        Deployed memory d;
        d.pm = pm;
        d.vault = vault;
        d.oracle = oracle;
        d.nft = nft;
        d.vamms = new VirtualAMM[](2);
        d.vamms[0] = ethAmm;
        d.vamms[1] = btcAmm;
        gov = _deployGovernance(d, g, address(this));
        vm.warp(block.timestamp + 1); // votes are counted at a past timepoint
    }

    function _proposal(bytes memory call) internal pure returns (address[] memory t, uint256[] memory v, bytes[] memory c) {
        t = new address[](1);
        v = new uint256[](1);
        c = new bytes[](1);
        c[0] = call;
        t[0] = address(0); // set by the caller
    }

    /// propose -> vote -> queue; returns the proposal id and what to execute
    function _passed(address target, bytes memory call, string memory text)
        internal
        returns (uint256 id, address[] memory t, uint256[] memory v, bytes[] memory c)
    {
        (t, v, c) = _proposal(call);
        t[0] = target;
        id = gov.governor.propose(t, v, c, text);
        vm.warp(block.timestamp + g.votingDelay + 1);
        gov.governor.castVote(id, 1); // for
        vm.warp(block.timestamp + g.votingPeriod + 1);
        assertEq(uint256(gov.governor.state(id)), uint256(IGovernor.ProposalState.Succeeded), "succeeded");
        gov.governor.queue(t, v, c, keccak256(bytes(text)));
    }

    function test_theTimelockOwnsEverything() public view {
        address tl = address(gov.timelock);
        assertEq(pm.owner(), tl, "pm");
        assertEq(vault.owner(), tl, "vault");
        assertEq(oracle.owner(), tl, "oracle");
        assertEq(nft.owner(), tl, "nft");
        assertEq(ethAmm.owner(), tl, "vamm");
        assertEq(gov.timelock.getMinDelay(), g.timelockDelay, "delay");
        assertEq(pm.paramChangeDelay(), 0, "the timelock's delay is the delay");
        assertFalse(gov.timelock.hasRole(gov.timelock.DEFAULT_ADMIN_ROLE(), address(this)), "no admin left");
        assertFalse(gov.timelock.hasRole(gov.timelock.PROPOSER_ROLE(), address(this)), "no proposer left");
        assertTrue(gov.timelock.hasRole(gov.timelock.PROPOSER_ROLE(), address(gov.governor)), "governor proposes");
    }

    /// A change without the timelock reverts: the deployer is not the owner any more.
    function test_aChangeWithoutTheTimelockReverts() public {
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        pm.setRiskParams(ETH, 15e18, 0.025e18, 0.02e18);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        vault.setMaxUtilization(1e18);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        ethAmm.setParams(0.1e18, 0.05e18);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        vault.announceInsuranceWithdrawal(1, address(this));
        // nor can anyone schedule on the timelock but the governor
        vm.expectPartialRevert(bytes4(keccak256("AccessControlUnauthorizedAccount(address,bytes32)")));
        gov.timelock.schedule(address(pm), 0, "", bytes32(0), bytes32(0), g.timelockDelay);
    }

    /// propose -> vote -> queue -> execute, with the delay: the change applies only then.
    function test_proposeVoteQueueExecute_appliesAfterTheDelay() public {
        bytes memory call = abi.encodeCall(PositionManager.setRiskParams, (ETH, 15e18, 0.025e18, 0.02e18));
        (uint256 id, address[] memory t, uint256[] memory v, bytes[] memory c) =
            _passed(address(pm), call, "set ETH/USDT maxLeverage 15");
        assertEq(uint256(gov.governor.state(id)), uint256(IGovernor.ProposalState.Queued), "queued");
        // a queued change cannot execute early
        vm.expectPartialRevert(TimelockController.TimelockUnexpectedOperationState.selector);
        gov.governor.execute(t, v, c, keccak256("set ETH/USDT maxLeverage 15"));
        assertEq(pm.getMarket(ETH).maxLeverage, 20e18, "not yet");
        vm.warp(block.timestamp + g.timelockDelay);
        gov.governor.execute(t, v, c, keccak256("set ETH/USDT maxLeverage 15"));
        assertEq(pm.getMarket(ETH).maxLeverage, 15e18, "applied");
        assertEq(uint256(gov.governor.state(id)), uint256(IGovernor.ProposalState.Executed), "executed");
    }

    function test_aProposalWithoutQuorumFails() public {
        // the deployer gives its votes away to an account that does not vote
        gov.token.delegate(voter);
        vm.warp(block.timestamp + 1);
        (address[] memory t, uint256[] memory v, bytes[] memory c) =
            _proposal(abi.encodeCall(PositionManager.setMarketPaused, (ETH, true)));
        t[0] = address(pm);
        uint256 id = gov.governor.propose(t, v, c, "pause ETH/USDT");
        vm.warp(block.timestamp + g.votingDelay + 1);
        gov.governor.castVote(id, 1); // no weight
        vm.warp(block.timestamp + g.votingPeriod + 1);
        assertEq(uint256(gov.governor.state(id)), uint256(IGovernor.ProposalState.Defeated), "defeated");
    }

    /// The guardian may pause a market at once; it may not unpause nor change anything else.
    function test_guardianMayOnlyPause() public {
        assertEq(pm.guardian(), address(this), "guardian");
        pm.setMarketPaused(ETH, true);
        assertTrue(pm.getMarket(ETH).paused, "paused");
        vm.expectRevert(abi.encodeWithSelector(PositionManagerBase.NotGuardian.selector, address(this)));
        pm.setMarketPaused(ETH, false);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, address(this)));
        pm.setGuardian(voter);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, voter));
        vm.prank(voter);
        pm.setMarketPaused(BTC, true);
        // unpausing goes through governance
        bytes memory call = abi.encodeCall(PositionManager.setMarketPaused, (ETH, false));
        (, address[] memory t, uint256[] memory v, bytes[] memory c) = _passed(address(pm), call, "unpause ETH/USDT");
        vm.warp(block.timestamp + g.timelockDelay);
        gov.governor.execute(t, v, c, keccak256("unpause ETH/USDT"));
        assertFalse(pm.getMarket(ETH).paused, "unpaused");
    }
}

/// Permissionless funding updates: anyone may call, paid a small reward from the insurance
/// fund, at most once per market per interval and never more than MAX_FUNDING_REWARD.
contract FundingRewardTest is Fixture {
    address internal bot = address(0xB07);

    function test_theCallerIsPaidFromInsurance() public {
        uint256 reward = pm.fundingReward();
        assertEq(reward, cfg.fundingReward, "configured");
        uint256 ins = vault.insuranceFund();
        vm.warp(T0 + 8 hours);
        vm.prank(bot);
        pm.updateFundingRate(ETH);
        assertEq(vault.freeCollateral(bot), reward, "paid to the caller's free collateral");
        assertEq(vault.insuranceFund(), ins - reward, "from the insurance fund");
        // once per market per interval: it cannot be farmed
        vm.prank(bot);
        vm.expectPartialRevert(PositionManagerBase.FundingTooEarly.selector);
        pm.updateFundingRate(ETH);
        vm.prank(bot);
        pm.updateFundingRate(BTC);
        assertEq(vault.freeCollateral(bot), 2 * reward, "one per market");
        _assertSolvent();
    }

    function test_aNewRewardAppliesToEveryMarketAtTheirNextUpdate() public {
        pm.setFundingReward(3e18);
        assertEq(pm.fundingReward(), 3e18, "the setting");
        vm.warp(T0 + 8 hours);
        vm.prank(bot);
        pm.updateFundingRate(ETH);
        vm.prank(bot);
        pm.updateFundingRate(BTC);
        assertEq(vault.freeCollateral(bot), 6e18, "both markets pay the new reward");
        pm.setFundingReward(0);
        vm.warp(T0 + 16 hours);
        vm.prank(bot);
        pm.updateFundingRate(ETH);
        assertEq(vault.freeCollateral(bot), 6e18, "a reward of 0 pays nothing");
        _assertSolvent();
    }

    function test_rewardIsBounded() public {
        uint256 max = pm.MAX_FUNDING_REWARD();
        vm.expectRevert(PositionManagerBase.InvalidMarketConfig.selector);
        pm.setFundingReward(max + 1);
        vm.prank(bot);
        vm.expectRevert(abi.encodeWithSelector(Ownable.OwnableUnauthorizedAccount.selector, bot));
        pm.setFundingReward(1);
    }

    function test_anEmptyInsuranceFundPaysWhatItHas() public {
        uint256 all = vault.insuranceFund() - 0.4e18; // leave less than the reward
        vault.announceInsuranceWithdrawal(all, address(this));
        vm.warp(T0 + vault.INSURANCE_WITHDRAWAL_DELAY());
        vault.withdrawInsurance(all, address(this));
        _setPrice(ethFeed, 2000e18);
        vm.prank(bot);
        pm.updateFundingRate(ETH);
        assertEq(vault.freeCollateral(bot), 0.4e18, "what was left");
        assertEq(vault.insuranceFund(), 0, "empty");
        vm.warp(block.timestamp + 8 hours);
        _setPrice(ethFeed, 2000e18);
        vm.prank(bot);
        pm.updateFundingRate(ETH); // still works, pays nothing
        _assertSolvent();
    }
}
