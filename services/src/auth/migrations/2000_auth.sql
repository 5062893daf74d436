-- auth: accounts, sessions (refresh-token families) and refresh tokens (hashed).
CREATE SCHEMA IF NOT EXISTS auth;

CREATE TABLE auth.users (
    id            UUID PRIMARY KEY,
    email         TEXT NOT NULL UNIQUE, -- stored lower-case
    password_hash TEXT NOT NULL,        -- argon2id PHC string
    display_name  TEXT NOT NULL,
    country       CHAR(2) NOT NULL,
    roles         TEXT[] NOT NULL DEFAULT '{customer}',
    created_at    TIMESTAMPTZ NOT NULL DEFAULT now()
);

CREATE TABLE auth.sessions (
    id             UUID PRIMARY KEY,
    user_id        UUID NOT NULL REFERENCES auth.users (id),
    ip             TEXT NOT NULL,
    device_id      TEXT,
    created_at     TIMESTAMPTZ NOT NULL DEFAULT now(),
    revoked_at     TIMESTAMPTZ,
    revoked_reason TEXT
);
CREATE INDEX sessions_user ON auth.sessions (user_id);

CREATE TABLE auth.refresh_tokens (
    token_hash BYTEA PRIMARY KEY,
    session_id UUID NOT NULL REFERENCES auth.sessions (id),
    issued_at  TIMESTAMPTZ NOT NULL DEFAULT now(),
    expires_at TIMESTAMPTZ NOT NULL,
    used_at    TIMESTAMPTZ
);
CREATE INDEX refresh_tokens_session ON auth.refresh_tokens (session_id);
