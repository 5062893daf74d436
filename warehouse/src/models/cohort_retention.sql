-- Customers grouped by the month of their first confirmed order; for each later month, how
-- many of them ordered again and what share of the cohort that is.
WITH orders AS (
    SELECT customer_id, date_trunc('month', placed_at) AS month
    FROM gold.fact_orders WHERE status = 'confirmed'
), firsts AS (
    SELECT customer_id, min(month) AS cohort_month FROM orders GROUP BY customer_id
), sizes AS (
    SELECT cohort_month, count(*) AS cohort_size FROM firsts GROUP BY cohort_month
), active AS (
    SELECT f.cohort_month, o.month, count(DISTINCT o.customer_id) AS customers
    FROM orders o JOIN firsts f ON f.customer_id = o.customer_id
    GROUP BY f.cohort_month, o.month
)
SELECT a.cohort_month,
       CAST((date_part('year', a.month) - date_part('year', a.cohort_month)) * 12
            + date_part('month', a.month) - date_part('month', a.cohort_month) AS BIGINT) AS months_since,
       s.cohort_size,
       a.customers,
       CAST(a.customers AS DOUBLE) / s.cohort_size AS retention
FROM active a JOIN sizes s ON s.cohort_month = a.cohort_month
