-- Stream processors: checkpoints (state + input offsets), windowed results, the fraud
-- team's review queue and its audit trail, the blocklist checkout consults, fraud rules as
-- versioned data, and detected anomalies.
CREATE SCHEMA IF NOT EXISTS streams;

-- One row per processor shard (a partition, or "all" for single-leader processors).
-- `version` fences a zombie instance: a save succeeds only on the version it loaded.
CREATE TABLE streams.checkpoints (
    processor   text        NOT NULL,
    shard       text        NOT NULL,
    version     bigint      NOT NULL,
    offsets     jsonb       NOT NULL,
    watermark   bigint,
    state       jsonb       NOT NULL,
    updated_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (processor, shard)
);

-- Window results per shard; totals are sums over shards (see streams.metrics).
CREATE TABLE streams.metric_partials (
    metric       text        NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    dims         text        NOT NULL,
    shard        text        NOT NULL,
    count        bigint      NOT NULL,
    sum          bigint      NOT NULL,
    updated_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (metric, window_start, window_end, dims, shard)
);
CREATE INDEX metric_partials_recent ON streams.metric_partials (metric, window_end DESC);

CREATE VIEW streams.metrics AS
SELECT metric, window_start, window_end, dims, sum(count)::bigint AS count, sum(sum)::bigint AS sum
FROM streams.metric_partials
GROUP BY metric, window_start, window_end, dims;

CREATE TABLE streams.fraud_rules (
    id          text        NOT NULL,
    version     integer     NOT NULL,
    kind        text        NOT NULL,
    params      jsonb       NOT NULL,
    weight      double precision NOT NULL CHECK (weight >= 0 AND weight <= 1),
    enabled     boolean     NOT NULL DEFAULT true,
    description text        NOT NULL,
    created_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (id, version)
);

INSERT INTO streams.fraud_rules (id, version, kind, params, weight, description) VALUES
('card_testing', 1, 'declines_then_order', '{"by":"card","window_min":30,"min_declines":3}', 0.9,
 'an order on a card with several declines just before (card testing)'),
('velocity_customer', 1, 'velocity', '{"by":"customer","what":"orders","window_min":10,"threshold":4}', 0.55,
 'many orders from one customer within minutes'),
('velocity_ip', 1, 'velocity', '{"by":"ip","what":"orders","window_min":10,"threshold":6}', 0.5,
 'many orders from one IP within minutes'),
('declines_customer', 1, 'velocity', '{"by":"customer","what":"declines","window_min":30,"threshold":4}', 0.5,
 'many declined payments for one customer'),
('new_account', 1, 'new_account_high_value', '{"max_age_min":60,"min_amount_minor":0}', 0.3,
 'an order from an account registered within the hour'),
('new_account_high_value', 1, 'new_account_high_value', '{"max_age_min":60,"min_amount_minor":50000}', 0.5,
 'a high-value order from an account registered within the hour'),
('account_takeover', 1, 'new_device_ship_elsewhere', '{}', 0.9,
 'a known customer on a new device shipping abroad'),
('country_mismatch', 1, 'country_mismatch', '{}', 0.85,
 'shipping country differs from billing, and the card is from a third country'),
('shared_card', 1, 'shared_entity', '{"by":"card","window_h":24,"min_accounts":3}', 0.85,
 'one card used by several accounts'),
('shared_device', 1, 'shared_entity', '{"by":"device","window_h":24,"min_accounts":3}', 0.7,
 'one device used by several accounts'),
('amount_zscore', 1, 'amount_zscore', '{"min_history":3,"z":3.0}', 0.3,
 'an amount far above the customer''s own history');

-- The review queue: one alert per order (the unique key makes re-raising after a restart a no-op).
CREATE TABLE streams.fraud_alerts (
    alert_id         uuid        PRIMARY KEY,
    order_id         uuid        UNIQUE,
    customer_id      uuid        NOT NULL,
    card_fingerprint text,
    score            integer     NOT NULL CHECK (score BETWEEN 0 AND 99),
    action           text        NOT NULL,
    rules_fired      text[]      NOT NULL,
    features         jsonb       NOT NULL,
    model_version    text,
    amount_minor     bigint,
    currency         text,
    status           text        NOT NULL DEFAULT 'open',
    event_time       timestamptz NOT NULL,
    raised_at        timestamptz NOT NULL DEFAULT now(),
    resolved_at      timestamptz,
    resolution       text,
    reviewer_id      uuid,
    note             text
);
CREATE INDEX fraud_alerts_status ON streams.fraud_alerts (status, raised_at DESC, alert_id DESC);
CREATE INDEX fraud_alerts_customer ON streams.fraud_alerts (customer_id);
CREATE INDEX fraud_alerts_rules ON streams.fraud_alerts USING gin (rules_fired);

CREATE TABLE streams.fraud_alert_actions (
    id          bigserial   PRIMARY KEY,
    alert_id    uuid        NOT NULL REFERENCES streams.fraud_alerts (alert_id),
    action      text        NOT NULL,
    reviewer_id uuid        NOT NULL,
    note        text,
    at          timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE streams.blocklist (
    kind       text        NOT NULL CHECK (kind IN ('card', 'customer')),
    value      text        NOT NULL,
    reason     text        NOT NULL,
    alert_id   uuid,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (kind, value)
);

CREATE TABLE streams.anomalies (
    anomaly_id   uuid        PRIMARY KEY,
    series       text        NOT NULL,
    method       text        NOT NULL,
    window_start timestamptz NOT NULL,
    window_end   timestamptz NOT NULL,
    observed     double precision NOT NULL,
    expected_low double precision NOT NULL,
    expected_high double precision NOT NULL,
    score        double precision NOT NULL,
    explanation  text        NOT NULL,
    UNIQUE (series, method, window_start)
);
