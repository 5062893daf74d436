-- Confirmed orders and revenue per day (the day the order was placed, UTC) and currency.
SELECT order_date, currency,
       count(*) AS orders,
       sum(total_minor) AS revenue_minor,
       count(DISTINCT customer_id) AS customers
FROM gold.fact_orders
WHERE status = 'confirmed' AND order_date {DATES}
GROUP BY order_date, currency
