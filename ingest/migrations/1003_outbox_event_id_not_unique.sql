-- The outbox no longer keeps a unique index on `event_id`. Every event of every service
-- went through it (8 per checkout, with their deletes a third of the checkout's WAL records
-- in the outbox), and nothing reads by it: the relay reads by `seq`, each envelope gets a
-- fresh UUIDv7, and consumers drop a repeated event id whatever its origin (a relay that
-- publishes again after a crash sends the same ids). The outbox holds only what is still to
-- send, so a lookup by id (`WHERE event_id = ...`) reads a small table.
ALTER TABLE outbox.events DROP CONSTRAINT events_event_id_key;
