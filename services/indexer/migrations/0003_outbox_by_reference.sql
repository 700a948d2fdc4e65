-- Forward events' outbox rows point at their rows in `events` (a block/log-index range and a
-- message count) instead of carrying the Kafka values: the indexer hands the values it has just
-- committed to the drainer in memory, and the drainer rebuilds them from `events` with the same
-- encoder (byte-identical) only after a restart or when its memory budget is full. The outbox
-- row still commits in the chunk's transaction, so what must be published is never lost.
-- Compensating (reverted) events keep their values inline, since their events rows are gone; a
-- rollback turns unsent by-reference rows it would orphan into inline rows first.
ALTER TABLE outbox
    ALTER COLUMN event_ids DROP NOT NULL,
    ALTER COLUMN msg_keys DROP NOT NULL,
    ALTER COLUMN msg_values DROP NOT NULL,
    ADD COLUMN message_count integer,
    ADD COLUMN first_log_index integer,
    ADD COLUMN last_log_index integer;
UPDATE outbox SET message_count = cardinality(msg_values);
ALTER TABLE outbox ALTER COLUMN message_count SET NOT NULL;
ALTER TABLE outbox ADD CONSTRAINT outbox_values_or_range CHECK (
    (msg_values IS NOT NULL AND cardinality(msg_values) = message_count
        AND cardinality(msg_keys) = message_count AND cardinality(event_ids) = message_count)
    OR (msg_values IS NULL AND message_count > 0
        AND first_block IS NOT NULL AND first_log_index IS NOT NULL
        AND last_block IS NOT NULL AND last_log_index IS NOT NULL)
);
-- During a rolling upgrade the previous version may still be the writer (migrations run before
-- the writer lock is taken); its inline rows come without message_count.
CREATE FUNCTION outbox_message_count() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.message_count IS NULL THEN
        NEW.message_count := cardinality(NEW.msg_values);
    END IF;
    RETURN NEW;
END
$$;
CREATE TRIGGER outbox_message_count BEFORE INSERT ON outbox
    FOR EACH ROW EXECUTE FUNCTION outbox_message_count();
