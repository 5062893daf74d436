-- One row per product view.
SELECT event_id AS view_id, session_id, user_id AS customer_id, product_id, device_id, referrer,
       event_time AS viewed_at, event_date AS view_date
FROM silver.product_viewed_v1
WHERE event_date {DATES}
