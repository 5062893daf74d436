-- cart and wishlist: one cart per customer.
CREATE SCHEMA IF NOT EXISTS carts;

CREATE TABLE carts.items (
    user_id    UUID NOT NULL,
    product_id UUID NOT NULL,
    sku        TEXT NOT NULL,
    quantity   INTEGER NOT NULL CHECK (quantity BETWEEN 1 AND 100),
    added_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, product_id)
);

CREATE TABLE carts.wishlist (
    user_id    UUID NOT NULL,
    product_id UUID NOT NULL,
    added_at   TIMESTAMPTZ NOT NULL DEFAULT now(),
    PRIMARY KEY (user_id, product_id)
);
