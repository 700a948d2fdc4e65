-- Hashes, addresses and market ids are lower-case hex: compare them byte by byte. Under the
-- database's default collation (often a libc locale such as C.UTF-8 or en_US.UTF-8) every
-- btree comparison on them went through strcoll, which made the unique index on
-- (chain_id, tx_hash, log_index) alone cost PostgreSQL more CPU per backfilled event than the
-- rest of the row. Byte order is also the natural order of fixed-width hex. Same type, so
-- only the indexes are rebuilt.
ALTER TABLE events
    ALTER COLUMN tx_hash TYPE text COLLATE "C",
    ALTER COLUMN block_hash TYPE text COLLATE "C",
    ALTER COLUMN contract TYPE text COLLATE "C",
    ALTER COLUMN market_id TYPE text COLLATE "C";
ALTER TABLE positions
    ALTER COLUMN market_id TYPE text COLLATE "C",
    ALTER COLUMN owner TYPE text COLLATE "C",
    ALTER COLUMN opened_tx TYPE text COLLATE "C",
    ALTER COLUMN closed_tx TYPE text COLLATE "C";
ALTER TABLE liquidations
    ALTER COLUMN tx_hash TYPE text COLLATE "C",
    ALTER COLUMN market_id TYPE text COLLATE "C",
    ALTER COLUMN owner TYPE text COLLATE "C",
    ALTER COLUMN liquidator TYPE text COLLATE "C";
ALTER TABLE funding_updates
    ALTER COLUMN tx_hash TYPE text COLLATE "C",
    ALTER COLUMN market_id TYPE text COLLATE "C";
ALTER TABLE markets
    ALTER COLUMN market_id TYPE text COLLATE "C";
ALTER TABLE sync_status
    ALTER COLUMN contract_address TYPE text COLLATE "C";
ALTER TABLE block_hashes
    ALTER COLUMN block_hash TYPE text COLLATE "C";
