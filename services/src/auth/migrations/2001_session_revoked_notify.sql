-- Every process caches which sessions are live (auth::sessions); a revoked or deleted
-- session is announced on this channel when the revoking transaction commits.
CREATE FUNCTION auth.notify_session_revoked() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('auth_session_revoked', OLD.id::text);
    RETURN NULL;
END
$$;

CREATE TRIGGER sessions_revoked
    AFTER UPDATE OF revoked_at OR DELETE ON auth.sessions
    FOR EACH ROW EXECUTE FUNCTION auth.notify_session_revoked();
