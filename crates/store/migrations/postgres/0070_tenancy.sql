-- Issue 7 (tenancy): team memberships with team roles and portal login sessions.
-- role: 'owner' | 'admin' | 'developer' | 'viewer'.
-- user_sessions.digest: HMAC-SHA-256 of the opaque session id (the cookie value is never stored).
CREATE TABLE team_members (
    team_id     uuid NOT NULL REFERENCES teams(id) ON DELETE CASCADE,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    role        text NOT NULL,
    created_at  timestamptz NOT NULL,
    PRIMARY KEY (team_id, user_id)
);
CREATE INDEX team_members_user ON team_members (user_id);

CREATE TABLE user_sessions (
    id          uuid PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    digest      bytea NOT NULL,
    expires_at  timestamptz NOT NULL,
    revoked_at  timestamptz,
    created_at  timestamptz NOT NULL
);
CREATE UNIQUE INDEX user_sessions_digest ON user_sessions (digest);
CREATE INDEX user_sessions_user ON user_sessions (user_id);
