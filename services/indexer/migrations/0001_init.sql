-- Perp-EX indexer schema, version 1.
-- Raw WAD values (uint256/int256 on chain) are numeric(78,0): exact, never floating point.
-- Addresses, hashes and market ids are 0x-prefixed lower-case hex text.
-- Timestamps are the chain's block timestamps in unix seconds (bigint).

CREATE TABLE markets (
    market_id                text PRIMARY KEY,          -- 0x bytes32 = keccak256(pair)
    pair                     text,                      -- e.g. 'ETH/USDT'
    vamm                     text,
    oracle_feed              text,
    cumulative_funding_index numeric(78,0) NOT NULL DEFAULT 0,  -- last FundingRateUpdated
    funding_rate             numeric(78,0) NOT NULL DEFAULT 0,
    last_funding_time        bigint,                    -- its `timestamp` argument
    paused                   boolean NOT NULL DEFAULT false,
    added_block              bigint,                    -- MarketAdded block (NULL: from config)
    updated_block            bigint
);

CREATE TABLE positions (
    token_id            numeric(78,0) PRIMARY KEY,
    market_id           text NOT NULL,
    market              text,                           -- pair, when known
    owner               text NOT NULL,
    is_long             boolean NOT NULL,
    collateral          numeric(78,0) NOT NULL,         -- current (after margin changes)
    leverage            numeric(78,0) NOT NULL,
    size                numeric(78,0) NOT NULL,
    notional            numeric(78,0) NOT NULL,
    entry_price         numeric(78,0) NOT NULL,
    entry_funding_index numeric(78,0) NOT NULL,         -- market index at open / last margin change
    open_fee            numeric(78,0) NOT NULL,
    status              text NOT NULL CHECK (status IN ('open', 'closed', 'liquidated')),
    opened_block        bigint NOT NULL,
    opened_timestamp    bigint NOT NULL,
    opened_tx           text NOT NULL,
    closed_block        bigint,
    closed_timestamp    bigint,
    closed_tx           text,
    exit_price          numeric(78,0),
    realized_pnl        numeric(78,0),
    funding_payment     numeric(78,0),
    payout              numeric(78,0),                  -- PositionClosed payout / liquidation owner refund
    updated_block       bigint NOT NULL
);
CREATE INDEX positions_open_idx ON positions (market_id) WHERE status = 'open';
CREATE INDEX positions_owner_idx ON positions (owner);

CREATE TABLE liquidations (
    token_id        numeric(78,0) NOT NULL,
    market_id       text NOT NULL,
    owner           text NOT NULL,
    liquidator      text NOT NULL,
    tx_hash         text NOT NULL,
    log_index       integer NOT NULL,
    block_number    bigint NOT NULL,
    block_timestamp bigint NOT NULL,
    price           numeric(78,0) NOT NULL,
    realized_pnl    numeric(78,0) NOT NULL,
    reward          numeric(78,0) NOT NULL,
    owner_refund    numeric(78,0) NOT NULL,
    bad_debt        numeric(78,0) NOT NULL,
    PRIMARY KEY (tx_hash, log_index)
);
CREATE INDEX liquidations_block_idx ON liquidations (block_number);
CREATE INDEX liquidations_liquidator_idx ON liquidations (liquidator);

CREATE TABLE funding_updates (
    market_id                text NOT NULL,
    funding_rate             numeric(78,0) NOT NULL,
    cumulative_funding_index numeric(78,0) NOT NULL,
    mark_twap                numeric(78,0) NOT NULL,
    index_twap               numeric(78,0) NOT NULL,
    funding_timestamp        bigint NOT NULL,
    tx_hash                  text NOT NULL,
    log_index                integer NOT NULL,
    block_number             bigint NOT NULL,
    block_timestamp          bigint NOT NULL,
    PRIMARY KEY (tx_hash, log_index)
);
CREATE INDEX funding_updates_market_idx ON funding_updates (market_id, block_number, log_index);

-- Every decoded event, exactly once.
CREATE TABLE events (
    chain_id          bigint NOT NULL,
    tx_hash           text NOT NULL,
    log_index         integer NOT NULL,
    block_number      bigint NOT NULL,
    block_hash        text NOT NULL,
    block_timestamp   bigint NOT NULL,
    contract          text NOT NULL,
    name              text NOT NULL,
    token_id          numeric(78,0),
    market_id         text,
    args              jsonb NOT NULL,                  -- integers as decimal strings
    funding_index_at  numeric(78,0),                   -- market index this event saw (open/margin)
    PRIMARY KEY (chain_id, tx_hash, log_index)
);
CREATE INDEX events_block_idx ON events (block_number, log_index);
CREATE INDEX events_token_idx ON events (token_id, block_number, log_index) WHERE token_id IS NOT NULL;

-- Where sync stands, per followed contract (all move together, in the chunk's transaction).
CREATE TABLE sync_status (
    contract_address  text PRIMARY KEY,
    last_synced_block bigint NOT NULL,
    last_synced_hash  text,
    updated_at        timestamptz NOT NULL DEFAULT now()
);

-- Hashes of recently indexed blocks, for reorg detection (REORG_WINDOW blocks back).
CREATE TABLE block_hashes (
    block_number bigint PRIMARY KEY,
    block_hash   text NOT NULL
);

-- Transactional outbox: written in the chunk's transaction, drained to Kafka, marked after ack.
-- One row holds up to OUTBOX_BATCH messages of one chunk, in chain order (row-per-batch keeps
-- the backfill's write and drain cost per event low); rows are sent in id order.
CREATE TABLE outbox (
    id          bigserial PRIMARY KEY,
    event_ids   text[] NOT NULL,                        -- "<chain>:<tx>:<log index>" per message
    msg_keys    bytea[] NOT NULL,
    msg_values  bytea[] NOT NULL,                       -- encode_event(envelope)
    headers     jsonb,                                  -- W3C trace carrier of the writing span
    reverted    boolean NOT NULL DEFAULT false,         -- compensating events of a reorg
    first_block bigint,
    last_block  bigint,
    created_at  timestamptz NOT NULL DEFAULT now(),
    sent_at     timestamptz
);
CREATE INDEX outbox_unsent_idx ON outbox (id) WHERE sent_at IS NULL;
