-- The live feed (`/v1/live`) follows what changed: metric partials by their update time,
-- anomalies by when they were detected.
CREATE INDEX metric_partials_updated ON streams.metric_partials (updated_at);
ALTER TABLE streams.anomalies ADD COLUMN detected_at timestamptz NOT NULL DEFAULT now();
CREATE INDEX anomalies_detected ON streams.anomalies (detected_at);
