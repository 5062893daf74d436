-- Input of the Polars job `batch::COHORT_RETENTION`: the confirmed orders' customer and time.
-- The job groups customers by the month of their first confirmed order and counts, for each
-- later month, how many of them ordered again and what share of the cohort that is.
SELECT customer_id, placed_at FROM gold.fact_orders WHERE status = 'confirmed'
