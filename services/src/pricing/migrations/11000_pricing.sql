-- pricing: promotions (percent or fixed, per product, per category or store-wide,
-- time-bound, optionally behind a coupon code).
CREATE SCHEMA IF NOT EXISTS pricing;

CREATE TABLE pricing.promotions (
    id          UUID PRIMARY KEY,
    name        TEXT NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('percent', 'fixed')),
    value       BIGINT NOT NULL CHECK (value > 0),
    product_id  UUID,
    category    TEXT,
    coupon_code TEXT UNIQUE, -- upper-case
    starts_at   TIMESTAMPTZ NOT NULL,
    ends_at     TIMESTAMPTZ NOT NULL,
    active      BOOLEAN NOT NULL DEFAULT true,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    CHECK (ends_at > starts_at),
    CHECK (kind <> 'percent' OR value <= 100)
);
