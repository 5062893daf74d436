-- The outbox's `headers` are stored as the JSON text the relay reads back, not as JSONB.
-- Every event of every service passes through this table (~7 per checkout), and PostgreSQL
-- parsed each row's headers on insert and printed them again for the relay, for a column
-- nobody queries in place (cast it, `headers::jsonb`, to look inside).
ALTER TABLE outbox.events ALTER COLUMN headers TYPE TEXT USING headers::text;
