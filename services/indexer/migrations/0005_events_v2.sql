-- Event schema version 2 (the contracts' economic-safety release, issue 13).
-- Funding is zero-sum between longs and shorts and accrues every second, each side on its own
-- cumulative index: cumulative_funding_index is now the longs' index and cumulative_funding_short
-- the shorts', both at the last update (markets.last_funding_time); funding_per_second is what a
-- unit of base on the paying side pays per second when both sides are equal.
ALTER TABLE markets
    ADD COLUMN funding_per_second       numeric(78,0) NOT NULL DEFAULT 0,
    ADD COLUMN cumulative_funding_short numeric(78,0) NOT NULL DEFAULT 0;
ALTER TABLE funding_updates
    ADD COLUMN funding_per_second       numeric(78,0) NOT NULL DEFAULT 0,
    ADD COLUMN cumulative_funding_short numeric(78,0) NOT NULL DEFAULT 0;
-- A liquidation may be partial: one row per liquidation call, with what it unwound and what
-- was left; the position stays open until remaining_size is 0.
ALTER TABLE liquidations
    ADD COLUMN size            numeric(78,0) NOT NULL DEFAULT 0,
    ADD COLUMN remaining_size  numeric(78,0) NOT NULL DEFAULT 0,
    ADD COLUMN funding_payment numeric(78,0) NOT NULL DEFAULT 0,
    ADD COLUMN insurance_fee   numeric(78,0) NOT NULL DEFAULT 0;
CREATE INDEX liquidations_token_idx ON liquidations (token_id, block_number, log_index);
-- The trading fee PositionClosed charged.
ALTER TABLE positions ADD COLUMN close_fee numeric(78,0);
