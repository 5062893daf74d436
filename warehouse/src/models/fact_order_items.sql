-- One row per order line, with the product's category and vendor as they were when ordered.
WITH lines AS (
    SELECT order_id, placed_at, order_date, status, unnest(lines) AS line
    FROM (
        SELECT o.order_id, o.placed_at, o.order_date, o.status, p.lines
        FROM gold.fact_orders o
        JOIN silver.order_placed_v1 p ON p.order_id = o.order_id AND p.event_time = o.placed_at
        WHERE o.order_date {DATES} AND p.event_date {DATES}
    )
)
SELECT l.order_id, l.order_date, l.placed_at, l.status,
       l.line['product_id'] AS product_id,
       l.line['sku'] AS sku,
       l.line['quantity'] AS quantity,
       l.line['unit_price']['amount_minor'] AS unit_price_minor,
       l.line['unit_price']['currency'] AS currency,
       l.line['quantity'] * l.line['unit_price']['amount_minor'] AS line_total_minor,
       d.category, d.vendor_id
FROM lines l
LEFT JOIN gold.dim_product d
  ON d.product_id = l.line['product_id']
 AND l.placed_at >= d.valid_from
 AND (d.valid_to IS NULL OR l.placed_at < d.valid_to)
