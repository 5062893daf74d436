-- shipping: shipments created by checkout and their tracking progression.
CREATE SCHEMA IF NOT EXISTS shipping;

CREATE TABLE shipping.shipments (
    id              UUID PRIMARY KEY,
    order_id        UUID NOT NULL UNIQUE,
    customer_id     UUID NOT NULL,
    carrier         TEXT NOT NULL,
    service_level   TEXT NOT NULL,
    country         CHAR(2) NOT NULL,
    zone            SMALLINT NOT NULL,
    weight_grams    INTEGER NOT NULL,
    cost_minor      BIGINT NOT NULL,
    currency        CHAR(3) NOT NULL,
    tracking_number TEXT NOT NULL UNIQUE,
    status          TEXT NOT NULL DEFAULT 'created', -- created | in_transit | delivered | cancelled
    created_at      TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
