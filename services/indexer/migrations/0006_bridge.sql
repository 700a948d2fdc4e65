-- The cross-chain collateral bridge (docs/bridge.md), followed on both of its chains by
-- services/indexer/bridge.py: the bridge contracts' events as they are on each chain, and
-- how far each chain was read (with the hash of that block, to notice a reorg under it).
CREATE TABLE bridge_events (
    chain_id        bigint NOT NULL,
    block_number    bigint NOT NULL,
    log_index       integer NOT NULL,
    block_hash      text COLLATE "C" NOT NULL,
    block_timestamp bigint NOT NULL,
    tx_hash         text COLLATE "C" NOT NULL,
    contract        text COLLATE "C" NOT NULL,
    name            text NOT NULL,
    guid            text COLLATE "C",                   -- the LayerZero message id, when it has one
    args            jsonb NOT NULL,                     -- integers as decimal strings
    PRIMARY KEY (chain_id, block_number, log_index)
);
CREATE INDEX bridge_events_guid_idx ON bridge_events (guid) WHERE guid IS NOT NULL;

CREATE TABLE bridge_sync (
    chain_id     bigint PRIMARY KEY,
    contract     text COLLATE "C" NOT NULL,
    last_block   bigint NOT NULL,
    last_hash    text COLLATE "C",
    updated_at   timestamptz NOT NULL DEFAULT now()
);

-- One row per transfer: sent on one chain, applied (or not yet) on the other. A deposit is in
-- flight from DepositSent (remote) until DepositCredited (home); a withdrawal from
-- WithdrawalSent (home) until Released or ReleaseDeferred (remote). `amount` is in home
-- collateral units (WAD) both ways.
CREATE VIEW bridge_transfers AS
SELECT s.guid,
       CASE s.name WHEN 'DepositSent' THEN 'deposit' ELSE 'withdrawal' END AS direction,
       s.chain_id AS src_chain_id,
       (s.args->>'nonce')::bigint AS nonce,
       CASE s.name WHEN 'DepositSent' THEN s.args->>'from' ELSE s.args->>'account' END AS sender,
       CASE s.name WHEN 'DepositSent' THEN s.args->>'account' ELSE s.args->>'recipient' END
           AS account,
       (CASE s.name WHEN 'DepositSent' THEN s.args->>'credit' ELSE s.args->>'amount' END)::numeric
           AS amount,
       s.block_number AS sent_block,
       s.block_timestamp AS sent_timestamp,
       s.tx_hash AS sent_tx,
       d.chain_id AS dst_chain_id,
       d.block_number AS delivered_block,
       d.block_timestamp AS delivered_timestamp,
       d.tx_hash AS delivered_tx,
       CASE WHEN d.guid IS NULL THEN 'in_flight'
            WHEN d.name = 'ReleaseDeferred' THEN 'deferred'
            ELSE 'delivered' END AS status
FROM bridge_events s
LEFT JOIN bridge_events d
       ON d.guid = s.guid AND d.name IN ('DepositCredited', 'Released', 'ReleaseDeferred')
WHERE s.name IN ('DepositSent', 'WithdrawalSent');
