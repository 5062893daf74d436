-- inventory: stock per SKU and reservations with expiry. The CHECKs make overselling
-- impossible whatever the concurrency: a reservation that would exceed stock fails.
CREATE SCHEMA IF NOT EXISTS inventory;

CREATE TABLE inventory.stock (
    sku       TEXT PRIMARY KEY,
    on_hand   BIGINT NOT NULL CHECK (on_hand >= 0),
    reserved  BIGINT NOT NULL DEFAULT 0 CHECK (reserved >= 0),
    CHECK (reserved <= on_hand)
);

CREATE TABLE inventory.reservations (
    id         UUID PRIMARY KEY,
    order_id   UUID NOT NULL,
    sku        TEXT NOT NULL REFERENCES inventory.stock (sku),
    quantity   INTEGER NOT NULL CHECK (quantity > 0),
    state      TEXT NOT NULL DEFAULT 'held', -- held | committed | released
    expires_at TIMESTAMPTZ NOT NULL
);
CREATE INDEX reservations_order ON inventory.reservations (order_id);
CREATE INDEX reservations_expiry ON inventory.reservations (expires_at) WHERE state = 'held';
