-- users: profiles, preferences and addresses; the account itself lives in auth.users.
CREATE SCHEMA IF NOT EXISTS users;

CREATE TABLE users.profiles (
    user_id     UUID PRIMARY KEY,
    locale      TEXT NOT NULL DEFAULT 'en',
    phone       TEXT,
    preferences JSONB NOT NULL DEFAULT '{}',
    updated_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE users.addresses (
    id          UUID PRIMARY KEY,
    user_id     UUID NOT NULL,
    name        TEXT NOT NULL,
    line1       TEXT NOT NULL,
    line2       TEXT,
    city        TEXT NOT NULL,
    postal_code TEXT NOT NULL,
    country     CHAR(2) NOT NULL,
    is_default  BOOLEAN NOT NULL DEFAULT false,
    created_at  TIMESTAMPTZ NOT NULL DEFAULT now()
);
CREATE INDEX addresses_user ON users.addresses (user_id);
