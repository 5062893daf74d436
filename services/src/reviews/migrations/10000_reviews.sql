-- reviews: one review per customer and product.
CREATE SCHEMA IF NOT EXISTS reviews;

CREATE TABLE reviews.reviews (
    id                UUID PRIMARY KEY,
    product_id        UUID NOT NULL,
    customer_id       UUID NOT NULL,
    rating            SMALLINT NOT NULL CHECK (rating BETWEEN 1 AND 5),
    title             TEXT NOT NULL,
    body              TEXT NOT NULL,
    verified_purchase BOOLEAN NOT NULL,
    created_at        TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (product_id, customer_id)
);
CREATE INDEX reviews_product ON reviews.reviews (product_id, id);
