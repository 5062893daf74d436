-- The relay deletes the rows Kafka acknowledged instead of stamping `published_at`. The
-- stamp was a non-HOT update (the column is in the partial index's predicate): a second
-- copy of every event's payload in the heap and the WAL, two index entries per row, and a
-- table that grew without bound, since nothing removed published rows. Kafka is the record
-- of what was published; the outbox holds only what is still to send.
DELETE FROM outbox.events WHERE published_at IS NOT NULL;
DROP INDEX outbox.events_unpublished;
ALTER TABLE outbox.events DROP COLUMN published_at;
