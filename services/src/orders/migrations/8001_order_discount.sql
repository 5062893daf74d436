-- Promotions and coupons reach orders.
ALTER TABLE orders.orders
    ADD COLUMN discount_minor BIGINT NOT NULL DEFAULT 0,
    ADD COLUMN coupon TEXT;
