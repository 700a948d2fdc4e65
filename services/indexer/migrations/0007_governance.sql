-- Governance (docs/governance.md): proposals and parameter changes, read from `events`.
-- They are views, so a reorg (which removes rolled-back rows from `events`) needs no extra
-- undo step, and the indexer's write path is unchanged. Integers stay exact: numeric(78,0).

CREATE INDEX events_governance_idx ON events (name, block_number, log_index)
    WHERE name IN ('ProposalCreated', 'ProposalQueued', 'ProposalExecuted', 'ProposalCanceled',
                   'VoteCast', 'RiskParamsUpdated', 'SafetyParamsUpdated', 'FundingParamsUpdated',
                   'ParamChangeScheduled', 'FundingRewardSet', 'GuardianSet',
                   'ParamChangeDelaySet', 'MarketPaused', 'MarketAdded');
CREATE INDEX events_proposal_idx ON events ((args ->> 'proposalId'), name)
    WHERE name IN ('ProposalQueued', 'ProposalExecuted', 'ProposalCanceled', 'VoteCast');

-- One row per proposal: what it does and how far it got. `status` is what the chain's events
-- say (proposed, queued, executed, canceled); whether voting is open or a queued proposal is
-- executable depends on the chain's clock, which the reader compares with vote_start/vote_end/eta.
CREATE VIEW governance_proposals AS
SELECT
    (c.args ->> 'proposalId')::numeric(78,0)        AS proposal_id,
    c.contract                                      AS governor,
    c.args ->> 'proposer'                           AS proposer,
    c.args ->> 'description'                        AS description,
    c.args -> 'targets'                             AS targets,
    c.args -> 'calldatas'                           AS calldatas,
    (c.args ->> 'voteStart')::bigint                AS vote_start,
    (c.args ->> 'voteEnd')::bigint                  AS vote_end,
    c.block_number                                  AS created_block,
    c.block_timestamp                               AS created_timestamp,
    c.tx_hash                                       AS created_tx,
    (q.args ->> 'etaSeconds')::bigint               AS eta,
    q.block_number                                  AS queued_block,
    x.block_number                                  AS executed_block,
    x.block_timestamp                               AS executed_timestamp,
    x.tx_hash                                       AS executed_tx,
    k.block_number                                  AS canceled_block,
    COALESCE(v.votes_for, 0)                        AS votes_for,
    COALESCE(v.votes_against, 0)                    AS votes_against,
    COALESCE(v.votes_abstain, 0)                    AS votes_abstain,
    CASE
        WHEN x.block_number IS NOT NULL THEN 'executed'
        WHEN k.block_number IS NOT NULL THEN 'canceled'
        WHEN q.block_number IS NOT NULL THEN 'queued'
        ELSE 'proposed'
    END                                             AS status
FROM events c
LEFT JOIN LATERAL (
    SELECT e.args, e.block_number FROM events e
    WHERE e.name = 'ProposalQueued' AND e.args ->> 'proposalId' = c.args ->> 'proposalId'
      AND e.contract = c.contract
    ORDER BY e.block_number DESC, e.log_index DESC LIMIT 1
) q ON true
LEFT JOIN LATERAL (
    SELECT e.block_number, e.block_timestamp, e.tx_hash FROM events e
    WHERE e.name = 'ProposalExecuted' AND e.args ->> 'proposalId' = c.args ->> 'proposalId'
      AND e.contract = c.contract
    LIMIT 1
) x ON true
LEFT JOIN LATERAL (
    SELECT e.block_number FROM events e
    WHERE e.name = 'ProposalCanceled' AND e.args ->> 'proposalId' = c.args ->> 'proposalId'
      AND e.contract = c.contract
    LIMIT 1
) k ON true
LEFT JOIN LATERAL (
    SELECT
        sum((e.args ->> 'weight')::numeric) FILTER (WHERE e.args ->> 'support' = '1') AS votes_for,
        sum((e.args ->> 'weight')::numeric) FILTER (WHERE e.args ->> 'support' = '0') AS votes_against,
        sum((e.args ->> 'weight')::numeric) FILTER (WHERE e.args ->> 'support' = '2') AS votes_abstain
    FROM events e
    WHERE e.name = 'VoteCast' AND e.args ->> 'proposalId' = c.args ->> 'proposalId'
      AND e.contract = c.contract
) v ON true
WHERE c.name = 'ProposalCreated';

-- Every parameter change the PositionManager made (or scheduled, on a live market under an
-- owner with a change delay), newest last; `args` holds the new values (decimal strings).
CREATE VIEW parameter_changes AS
SELECT
    e.block_number,
    e.log_index,
    e.block_timestamp,
    e.tx_hash,
    e.name,
    e.market_id,
    m.pair AS market,
    e.args,
    CASE WHEN e.name = 'ParamChangeScheduled' THEN 'scheduled' ELSE 'applied' END AS kind
FROM events e
LEFT JOIN markets m ON m.market_id = e.market_id
WHERE e.name IN ('RiskParamsUpdated', 'SafetyParamsUpdated', 'FundingParamsUpdated',
                 'ParamChangeScheduled', 'FundingRewardSet', 'GuardianSet',
                 'ParamChangeDelaySet', 'MarketPaused');
