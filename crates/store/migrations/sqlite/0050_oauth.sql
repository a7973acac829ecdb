-- Issue 5: OAuth 2.0 authorization server (token-security.md §1.1, §1.3-1.7, §5.2).

CREATE TABLE oauth_clients (
    id             TEXT PRIMARY KEY,
    team_id        TEXT NOT NULL REFERENCES teams(id),
    app_id         TEXT NOT NULL REFERENCES apps(id),
    name           TEXT NOT NULL,
    auth_method    TEXT NOT NULL,
    secret_digest  BLOB,
    pepper_version INTEGER NOT NULL,
    secret_hint    TEXT,
    public_jwk     TEXT,
    token_format   TEXT NOT NULL,
    scopes         TEXT NOT NULL DEFAULT '[]',
    models         TEXT NOT NULL DEFAULT '[]',
    audiences      TEXT NOT NULL DEFAULT '[]',
    access_ttl_secs INTEGER NOT NULL,
    revoked_at     INTEGER,
    created_at     INTEGER NOT NULL
);
CREATE INDEX oauth_clients_app ON oauth_clients (app_id, created_at);

CREATE TABLE issued_tokens (
    id             TEXT PRIMARY KEY,
    kind           TEXT NOT NULL,
    digest         BLOB,
    pepper_version INTEGER NOT NULL,
    hint           TEXT NOT NULL,
    team_id        TEXT NOT NULL REFERENCES teams(id),
    app_id         TEXT NOT NULL REFERENCES apps(id),
    client_id      TEXT,
    subject        TEXT NOT NULL,
    parent_id      TEXT,
    scopes         TEXT NOT NULL DEFAULT '[]',
    models         TEXT NOT NULL DEFAULT '[]',
    audience       TEXT,
    max_tokens     INTEGER,
    act            TEXT,
    binding_jkt    TEXT,
    expires_at     INTEGER NOT NULL,
    consumed_at    INTEGER,
    revoked_at     INTEGER,
    created_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX issued_tokens_digest ON issued_tokens (digest);
CREATE INDEX issued_tokens_client ON issued_tokens (client_id);
CREATE INDEX issued_tokens_revoked ON issued_tokens (revoked_at);

CREATE TABLE signing_keys (
    kid            TEXT PRIMARY KEY,
    alg            TEXT NOT NULL,
    public_jwk     TEXT NOT NULL,
    format_version INTEGER NOT NULL,
    kek_id         TEXT NOT NULL,
    wrapped_dek    BLOB NOT NULL,
    nonce          BLOB NOT NULL,
    ciphertext     BLOB NOT NULL,
    sign_from      INTEGER NOT NULL,
    retire_at      INTEGER,
    created_at     INTEGER NOT NULL
);

CREATE TABLE used_jtis (
    key            BLOB PRIMARY KEY,
    expires_at     INTEGER NOT NULL
);
