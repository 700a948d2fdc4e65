-- Indexes for pages of positions (the dashboard's REST API and its GraphQL keyset pagination,
-- services/dashboard/keyset.py): each ordering the API offers with a filter that is common is
-- read from an index in order, so a page costs its own rows however deep it is, instead of a
-- sort of every matching position. token_id breaks ties in every ordering.
-- (0006 is the bridge, 0007 governance.)
CREATE INDEX positions_opened_idx ON positions (opened_block, token_id);
CREATE INDEX positions_market_opened_idx ON positions (market_id, opened_block, token_id);
-- "closed" sorts open positions (closed_block NULL) last: newest closed first is the
-- expression below, descending (repository.position_sort_column).
CREATE INDEX positions_closed_idx ON positions ((COALESCE(closed_block, -1)), token_id);
CREATE INDEX positions_notional_idx ON positions (notional, token_id);
-- An owner's positions, newest first, without a sort; replaces the owner-only index.
CREATE INDEX positions_owner_opened_idx ON positions (owner, opened_block, token_id);
DROP INDEX positions_owner_idx;
