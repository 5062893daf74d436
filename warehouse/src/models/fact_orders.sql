-- One row per order. Status follows the saga: confirmed or cancelled once either happened,
-- placed while it runs.
WITH confirmed AS (
    SELECT order_id, min(event_time) AS confirmed_at, min(payment_id) AS payment_id,
           min(shipment_id) AS shipment_id
    FROM silver.order_confirmed_v1 GROUP BY order_id
),
cancelled AS (
    SELECT order_id, min(event_time) AS cancelled_at, min(reason) AS cancel_reason
    FROM silver.order_cancelled_v1 GROUP BY order_id
),
placed AS (
    SELECT *, row_number() OVER (PARTITION BY order_id ORDER BY event_time) AS rn
    FROM silver.order_placed_v1
    WHERE event_date {DATES}
)
SELECT p.order_id, p.customer_id,
       p.event_time AS placed_at, p.event_date AS order_date,
       CASE WHEN x.order_id IS NOT NULL THEN 'cancelled'
            WHEN c.order_id IS NOT NULL THEN 'confirmed'
            ELSE 'placed' END AS status,
       c.confirmed_at, x.cancelled_at, x.cancel_reason, c.payment_id, c.shipment_id,
       p.total['currency'] AS currency,
       p.subtotal['amount_minor'] AS subtotal_minor,
       p.discount['amount_minor'] AS discount_minor,
       p.shipping['amount_minor'] AS shipping_minor,
       p.tax['amount_minor'] AS tax_minor,
       p.total['amount_minor'] AS total_minor,
       p.coupon,
       array_length(p.lines) AS line_count,
       p.billing_country, p.shipping_country, p.card['country'] AS card_country,
       p.card['bin'] AS card_bin
FROM placed p
LEFT JOIN confirmed c ON c.order_id = p.order_id
LEFT JOIN cancelled x ON x.order_id = p.order_id
WHERE p.rn = 1
