-- One row per payment outcome.
SELECT payment_id, order_id, customer_id, 'authorized' AS outcome, event_time, event_date,
       amount['amount_minor'] AS amount_minor, amount['currency'] AS currency, gateway,
       CAST(NULL AS VARCHAR) AS reason
FROM silver.payment_authorized_v1 WHERE event_date {DATES}
UNION ALL
SELECT payment_id, order_id, customer_id, 'failed', event_time, event_date,
       amount['amount_minor'], amount['currency'], gateway, reason
FROM silver.payment_failed_v1 WHERE event_date {DATES}
UNION ALL
SELECT payment_id, order_id, customer_id, 'refunded', event_time, event_date,
       amount['amount_minor'], amount['currency'], CAST(NULL AS VARCHAR), reason
FROM silver.payment_refunded_v1 WHERE event_date {DATES}
