-- catalog: products with multi-language text, JSONB attributes, vendor ownership, and the
-- history of base prices.
CREATE SCHEMA IF NOT EXISTS catalog;

CREATE TABLE catalog.products (
    id            UUID PRIMARY KEY,
    sku           TEXT NOT NULL UNIQUE,
    vendor_id     UUID NOT NULL,
    category      TEXT NOT NULL,
    names         JSONB NOT NULL,            -- {"en": "...", "de": "..."}
    descriptions  JSONB NOT NULL DEFAULT '{}',
    attributes    JSONB NOT NULL DEFAULT '{}',
    price_minor   BIGINT NOT NULL CHECK (price_minor > 0),
    currency      CHAR(3) NOT NULL,
    weight_grams  INTEGER NOT NULL CHECK (weight_grams > 0),
    status        TEXT NOT NULL DEFAULT 'active',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX products_category ON catalog.products (category, id);

CREATE TABLE catalog.price_history (
    product_id  UUID NOT NULL REFERENCES catalog.products (id),
    price_minor BIGINT NOT NULL,
    currency    CHAR(3) NOT NULL,
    valid_from  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX price_history_product ON catalog.price_history (product_id, valid_from);
