-- Outbox message arrays are written once, read once and purged: compressing them (pglz, the
-- TOAST default for values over ~2 kB) cost more PostgreSQL CPU per chunk than the rest of the
-- chunk's write. Stored out of line, uncompressed.
ALTER TABLE outbox ALTER COLUMN event_ids SET STORAGE EXTERNAL;
ALTER TABLE outbox ALTER COLUMN msg_keys SET STORAGE EXTERNAL;
ALTER TABLE outbox ALTER COLUMN msg_values SET STORAGE EXTERNAL;
