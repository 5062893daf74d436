-- The funnel per day: sessions that viewed a product, sessions that added to cart, sessions
-- that started checkout, orders placed and orders paid (confirmed).
WITH views AS (
    SELECT event_date AS day, count(DISTINCT session_id) AS n FROM silver.product_viewed_v1 WHERE event_date {DATES} GROUP BY 1
), carts AS (
    SELECT event_date AS day, count(DISTINCT session_id) AS n FROM silver.cart_item_added_v1 WHERE event_date {DATES} GROUP BY 1
), checkouts AS (
    SELECT event_date AS day, count(DISTINCT session_id) AS n FROM silver.checkout_started_v1 WHERE event_date {DATES} GROUP BY 1
), orders AS (
    SELECT order_date AS day, count(*) AS placed,
           sum(CASE WHEN status = 'confirmed' THEN 1 ELSE 0 END) AS paid
    FROM gold.fact_orders WHERE order_date {DATES} GROUP BY 1
), days AS (
    SELECT day FROM views UNION SELECT day FROM carts UNION SELECT day FROM checkouts
    UNION SELECT day FROM orders
)
SELECT d.day,
       coalesce(v.n, 0) AS view_sessions,
       coalesce(c.n, 0) AS cart_sessions,
       coalesce(k.n, 0) AS checkout_sessions,
       coalesce(o.placed, 0) AS orders_placed,
       coalesce(o.paid, 0) AS orders_paid
FROM days d
LEFT JOIN views v ON v.day = d.day
LEFT JOIN carts c ON c.day = d.day
LEFT JOIN checkouts k ON k.day = d.day
LEFT JOIN orders o ON o.day = d.day
