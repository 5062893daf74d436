-- Customers with PII masked: analysts see the e-mail's first letter and domain only, never the
-- address or the display name (the raw values stay in silver, which only admins can query).
SELECT user_id AS customer_id,
       concat(left(email, 1), '***@', split_part(email, '@', 2)) AS email_masked,
       country,
       role,
       registered_at,
       CAST(registered_at AS DATE) AS registered_date
FROM (
    SELECT *, row_number() OVER (PARTITION BY user_id ORDER BY event_time) AS rn
    FROM silver.user_registered_v1
)
WHERE rn = 1
