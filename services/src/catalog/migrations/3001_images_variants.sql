-- Product images (files under the data dir, rows here) and variant groups: a variant is a
-- product of its own (own SKU, price, stock) that names the product it is a variant of.
CREATE TABLE catalog.images (
    id           UUID PRIMARY KEY,
    product_id   UUID NOT NULL REFERENCES catalog.products (id),
    content_type TEXT NOT NULL,
    bytes        INTEGER NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX images_product ON catalog.images (product_id, id);

ALTER TABLE catalog.products ADD COLUMN variant_of UUID REFERENCES catalog.products (id);
CREATE INDEX products_variant_of ON catalog.products (variant_of) WHERE variant_of IS NOT NULL;
