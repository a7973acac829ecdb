-- Gatehouse initial schema (SQLite). DESIGN.md "Data model".
-- ids: UUIDv7 as lowercase hyphenated TEXT (text order = time order).
-- timestamps: INTEGER microseconds since the Unix epoch, UTC.
-- lists: JSON arrays as TEXT. digests and envelope parts: BLOB.

CREATE TABLE settings (
    key         TEXT PRIMARY KEY NOT NULL,
    value       TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL
);

CREATE TABLE teams (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE apps (
    id          TEXT PRIMARY KEY NOT NULL,
    team_id     TEXT NOT NULL REFERENCES teams(id),
    name        TEXT NOT NULL,
    created_at  INTEGER NOT NULL,
    UNIQUE (team_id, name)
);

CREATE TABLE users (
    id            TEXT PRIMARY KEY NOT NULL,
    username      TEXT NOT NULL UNIQUE,
    password_hash TEXT NOT NULL,
    system_role   TEXT NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE TABLE operator_tokens (
    id             TEXT PRIMARY KEY NOT NULL,
    user_id        TEXT NOT NULL REFERENCES users(id),
    name           TEXT NOT NULL,
    digest         BLOB NOT NULL,
    pepper_version INTEGER NOT NULL,
    hint           TEXT NOT NULL,
    expires_at     INTEGER,
    revoked_at     INTEGER,
    created_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX operator_tokens_digest ON operator_tokens (digest);

CREATE TABLE credentials (
    id             TEXT PRIMARY KEY NOT NULL,
    team_id        TEXT NOT NULL REFERENCES teams(id),
    app_id         TEXT NOT NULL REFERENCES apps(id),
    name           TEXT NOT NULL,
    digest         BLOB NOT NULL,
    pepper_version INTEGER NOT NULL,
    hint           TEXT NOT NULL,
    models         TEXT NOT NULL DEFAULT '[]',
    scopes         TEXT NOT NULL DEFAULT '[]',
    expires_at     INTEGER,
    revoked_at     INTEGER,
    last_used_at   INTEGER,
    created_at     INTEGER NOT NULL
);
CREATE UNIQUE INDEX credentials_digest ON credentials (digest);
CREATE INDEX credentials_team ON credentials (team_id, created_at);
CREATE INDEX credentials_app ON credentials (app_id, created_at);

CREATE TABLE providers (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    kind        TEXT NOT NULL,
    base_url    TEXT NOT NULL,
    settings    TEXT NOT NULL DEFAULT '{}',
    created_at  INTEGER NOT NULL
);

CREATE TABLE provider_credentials (
    id             TEXT PRIMARY KEY NOT NULL,
    provider_id    TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    team_id        TEXT NOT NULL,
    hint           TEXT NOT NULL,
    format_version INTEGER NOT NULL,
    kek_id         TEXT NOT NULL,
    wrapped_dek    BLOB NOT NULL,
    nonce          BLOB NOT NULL,
    ciphertext     BLOB NOT NULL,
    priority       INTEGER NOT NULL DEFAULT 0,
    revoked_at     INTEGER,
    created_at     INTEGER NOT NULL
);
CREATE INDEX provider_credentials_provider ON provider_credentials (provider_id, priority);

CREATE TABLE models (
    id          TEXT PRIMARY KEY NOT NULL,
    name        TEXT NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);

CREATE TABLE deployments (
    id             TEXT PRIMARY KEY NOT NULL,
    model_id       TEXT NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    provider_id    TEXT NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    upstream_model TEXT NOT NULL,
    weight         INTEGER NOT NULL,
    priority       INTEGER NOT NULL,
    position       INTEGER NOT NULL,
    created_at     INTEGER NOT NULL
);
CREATE INDEX deployments_model ON deployments (model_id, position);
CREATE INDEX deployments_provider ON deployments (provider_id);

-- No foreign keys: a call log is kept even if what it names is gone, and a batch never fails
-- because of one row's reference.
CREATE TABLE call_logs (
    id                  TEXT PRIMARY KEY NOT NULL,
    created_at          INTEGER NOT NULL,
    request_id          TEXT NOT NULL,
    team_id             TEXT,
    app_id              TEXT,
    credential_id       TEXT,
    endpoint            TEXT NOT NULL,
    model               TEXT,
    provider            TEXT,
    upstream_model      TEXT,
    stream              INTEGER NOT NULL,
    status              INTEGER NOT NULL,
    error_code          TEXT,
    latency_ms          INTEGER NOT NULL,
    upstream_latency_ms INTEGER,
    ttft_ms             INTEGER,
    prompt_tokens       INTEGER NOT NULL,
    completion_tokens   INTEGER NOT NULL,
    cached_tokens       INTEGER NOT NULL,
    upstream_request_id TEXT
);
CREATE INDEX call_logs_created ON call_logs (created_at, id);
CREATE INDEX call_logs_credential ON call_logs (credential_id, created_at);
CREATE INDEX call_logs_model ON call_logs (model, created_at);
CREATE INDEX call_logs_app ON call_logs (app_id, created_at);
CREATE INDEX call_logs_team ON call_logs (team_id, created_at);
