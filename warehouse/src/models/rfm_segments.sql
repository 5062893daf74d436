-- Input of the Polars job `batch::RFM_SEGMENTS`: every order (recency counts from the latest
-- order of any status; the scores read the confirmed ones). The job scores recency,
-- frequency and monetary value 1-5 by quintile per customer and names a segment.
SELECT customer_id, placed_at, status, total_minor FROM gold.fact_orders
