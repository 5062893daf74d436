-- payments: one payment per order (the idempotency key), its state and outcome. Card
-- numbers are never stored: only a fingerprint, BIN and last four.
CREATE SCHEMA IF NOT EXISTS payments;

CREATE TABLE payments.payments (
    id               UUID PRIMARY KEY,
    order_id         UUID NOT NULL UNIQUE,
    customer_id      UUID NOT NULL,
    amount_minor     BIGINT NOT NULL,
    currency         CHAR(3) NOT NULL,
    card_fingerprint TEXT NOT NULL,
    status           TEXT NOT NULL, -- authorized | captured | voided | refunded | failed
    decline_reason   TEXT,
    auth_code        TEXT,
    refunded_minor   BIGINT NOT NULL DEFAULT 0,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
