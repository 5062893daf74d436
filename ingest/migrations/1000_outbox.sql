-- The transactional outbox: services insert here in the same transaction as their state
-- change; the relay publishes rows to Kafka in seq order and marks them published.
CREATE SCHEMA IF NOT EXISTS outbox;

CREATE TABLE outbox.events (
    seq          BIGSERIAL PRIMARY KEY,
    event_id     UUID        NOT NULL UNIQUE,
    topic        TEXT        NOT NULL, -- catalogue base name; the relay adds its prefix
    key          TEXT        NOT NULL,
    event_type   TEXT        NOT NULL,
    headers      JSONB       NOT NULL, -- [[name, value], ...] CloudEvents binary-mode headers
    payload      BYTEA       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    published_at TIMESTAMPTZ
);

CREATE INDEX events_unpublished ON outbox.events (seq) WHERE published_at IS NULL;
