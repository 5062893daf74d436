-- orders: the order, its lines and its state history. (customer, idempotency key) is
-- unique, so a retried checkout finds the order it already made.
CREATE SCHEMA IF NOT EXISTS orders;

CREATE TABLE orders.orders (
    id               UUID PRIMARY KEY,
    customer_id      UUID NOT NULL,
    idempotency_key  TEXT NOT NULL,
    status           TEXT NOT NULL, -- placed | confirmed | cancelled
    currency         CHAR(3) NOT NULL,
    subtotal_minor   BIGINT NOT NULL,
    shipping_minor   BIGINT NOT NULL,
    total_minor      BIGINT NOT NULL,
    billing_country  CHAR(2) NOT NULL,
    shipping_country CHAR(2) NOT NULL,
    payment_id       UUID,
    shipment_id      UUID,
    cancel_reason    TEXT,
    created_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    updated_at       TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (customer_id, idempotency_key)
);
CREATE INDEX orders_customer ON orders.orders (customer_id, id);

CREATE TABLE orders.lines (
    order_id         UUID NOT NULL REFERENCES orders.orders (id),
    product_id       UUID NOT NULL,
    sku              TEXT NOT NULL,
    quantity         INTEGER NOT NULL CHECK (quantity > 0),
    unit_price_minor BIGINT NOT NULL,
    PRIMARY KEY (order_id, product_id)
);

CREATE TABLE orders.history (
    order_id UUID NOT NULL REFERENCES orders.orders (id),
    status   TEXT NOT NULL,
    detail   TEXT,
    at       TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX history_order ON orders.history (order_id, at);
