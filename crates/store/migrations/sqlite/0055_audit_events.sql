-- Issue 5: append-only, hash-chained audit log (token-security.md §5.6, G-11).
-- seq is the chain position (1, 2, … without gaps); hash = SHA-256 over prev_hash and the
-- canonical encoding of the row (gatehouse_store::audit::event_hash). details is canonical JSON.
CREATE TABLE audit_events (
    seq           INTEGER PRIMARY KEY NOT NULL,
    at            INTEGER NOT NULL,
    actor         TEXT NOT NULL,
    event_type    TEXT NOT NULL,
    credential_id TEXT,
    fingerprint   TEXT,
    ip            TEXT,
    user_agent    TEXT,
    reason        TEXT,
    details       TEXT NOT NULL,
    prev_hash     TEXT NOT NULL,
    hash          TEXT NOT NULL
);
CREATE INDEX audit_events_credential ON audit_events (credential_id, seq);
CREATE INDEX audit_events_type ON audit_events (event_type, seq);
CREATE INDEX audit_events_fingerprint ON audit_events (fingerprint, seq);

-- Append-only: the application never updates or deletes audit rows.
CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events
BEGIN
    SELECT RAISE(ABORT, 'audit_events is append-only');
END;
