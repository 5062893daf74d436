-- Confirmed sales per vendor, day and currency, and the marketplace's commission on them
-- ({COMMISSION_BPS} basis points, rounded down to the minor unit).
SELECT vendor_id, order_date, currency,
       count(DISTINCT order_id) AS orders,
       sum(quantity) AS units,
       sum(line_total_minor) AS gross_minor,
       sum(line_total_minor) * {COMMISSION_BPS} / 10000 AS commission_minor
FROM gold.fact_order_items
WHERE status = 'confirmed' AND vendor_id IS NOT NULL AND order_date {DATES}
GROUP BY vendor_id, order_date, currency
