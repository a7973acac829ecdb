-- Issue 5: append-only, hash-chained audit log (token-security.md §5.6, G-11).
-- seq is the chain position (1, 2, … without gaps); hash = SHA-256 over prev_hash and the
-- canonical encoding of the row (gatehouse_store::audit::event_hash). details is canonical JSON
-- kept as text so the hashed bytes are exactly what is stored.
CREATE TABLE audit_events (
    seq           bigint PRIMARY KEY,
    at            timestamptz NOT NULL,
    actor         text NOT NULL,
    event_type    text NOT NULL,
    credential_id uuid,
    fingerprint   text,
    ip            text,
    user_agent    text,
    reason        text,
    details       text NOT NULL,
    prev_hash     text NOT NULL,
    hash          text NOT NULL
);
CREATE INDEX audit_events_credential ON audit_events (credential_id, seq);
CREATE INDEX audit_events_type ON audit_events (event_type, seq);
CREATE INDEX audit_events_fingerprint ON audit_events (fingerprint, seq);

-- Append-only: the application never updates or deletes audit rows.
CREATE FUNCTION audit_events_append_only() RETURNS trigger AS $$
BEGIN
    RAISE EXCEPTION 'audit_events is append-only';
END;
$$ LANGUAGE plpgsql;
CREATE TRIGGER audit_events_no_change BEFORE UPDATE OR DELETE ON audit_events
    FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
