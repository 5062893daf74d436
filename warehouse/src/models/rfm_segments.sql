-- Recency (days since the last confirmed order, counted from the latest order in the data),
-- frequency and monetary value per customer, each scored 1-5 by quintile, and a segment.
WITH per_customer AS (
    SELECT customer_id,
           max(placed_at) AS last_order_at,
           count(*) AS frequency,
           sum(total_minor) AS monetary_minor
    FROM gold.fact_orders WHERE status = 'confirmed'
    GROUP BY customer_id
), scored AS (
    SELECT *,
           CAST(date_part('day', (SELECT max(placed_at) FROM gold.fact_orders) - last_order_at) AS BIGINT) AS recency_days,
           ntile(5) OVER (ORDER BY last_order_at) AS r,
           ntile(5) OVER (ORDER BY frequency) AS f,
           ntile(5) OVER (ORDER BY monetary_minor) AS m
    FROM per_customer
)
SELECT customer_id, last_order_at, recency_days, frequency, monetary_minor,
       r AS recency_score, f AS frequency_score, m AS monetary_score,
       CASE WHEN r >= 4 AND f >= 4 THEN 'champions'
            WHEN f >= 4 THEN 'loyal'
            WHEN r >= 4 AND f <= 2 THEN 'new_or_promising'
            WHEN r <= 2 AND f >= 3 THEN 'at_risk'
            WHEN r <= 2 THEN 'hibernating'
            ELSE 'needs_attention' END AS segment
FROM scored
