-- Product versions (SCD2). Every catalog event opens a version; attributes the event does not
-- carry are the last known ones; a version is valid until the next event of its product.
WITH changes AS (
    SELECT product_id, event_time, event_id, sku, vendor_id, category, title,
           price['amount_minor'] AS price_minor, price['currency'] AS currency, status
    FROM silver.product_created_v1
    UNION ALL
    SELECT product_id, event_time, event_id, sku, CAST(NULL AS VARCHAR), category, title,
           CAST(NULL AS BIGINT), CAST(NULL AS VARCHAR), status
    FROM silver.product_updated_v1
    UNION ALL
    SELECT product_id, event_time, event_id, sku, CAST(NULL AS VARCHAR), CAST(NULL AS VARCHAR),
           CAST(NULL AS VARCHAR), new_price['amount_minor'], new_price['currency'], CAST(NULL AS VARCHAR)
    FROM silver.price_changed_v1
),
filled AS (
    SELECT product_id, event_time, event_id, sku,
           last_value(vendor_id) IGNORE NULLS OVER w AS vendor_id,
           last_value(category) IGNORE NULLS OVER w AS category,
           last_value(title) IGNORE NULLS OVER w AS title,
           last_value(price_minor) IGNORE NULLS OVER w AS price_minor,
           last_value(currency) IGNORE NULLS OVER w AS currency,
           last_value(status) IGNORE NULLS OVER w AS status
    FROM changes
    WINDOW w AS (PARTITION BY product_id ORDER BY event_time, event_id
                 ROWS BETWEEN UNBOUNDED PRECEDING AND CURRENT ROW)
)
SELECT product_id, sku, vendor_id, category, title, price_minor, currency, status,
       event_time AS valid_from,
       lead(event_time) OVER (PARTITION BY product_id ORDER BY event_time, event_id) AS valid_to,
       lead(event_time) OVER (PARTITION BY product_id ORDER BY event_time, event_id) IS NULL AS is_current
FROM filled
