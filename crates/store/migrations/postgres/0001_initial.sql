-- Gatehouse initial schema (PostgreSQL). DESIGN.md "Data model".
-- ids: uuid (v7). timestamps: timestamptz (microseconds). lists: text[]. blobs: bytea.
-- Tables are created unqualified, in the first schema of search_path.

CREATE TABLE settings (
    key         text PRIMARY KEY,
    value       text NOT NULL,
    created_at  timestamptz NOT NULL,
    updated_at  timestamptz NOT NULL
);

CREATE TABLE teams (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL
);

CREATE TABLE apps (
    id          uuid PRIMARY KEY,
    team_id     uuid NOT NULL REFERENCES teams(id),
    name        text NOT NULL,
    created_at  timestamptz NOT NULL,
    UNIQUE (team_id, name)
);

CREATE TABLE users (
    id            uuid PRIMARY KEY,
    username      text NOT NULL UNIQUE,
    password_hash text NOT NULL,
    system_role   text NOT NULL,
    created_at    timestamptz NOT NULL
);

CREATE TABLE operator_tokens (
    id             uuid PRIMARY KEY,
    user_id        uuid NOT NULL REFERENCES users(id),
    name           text NOT NULL,
    digest         bytea NOT NULL,
    pepper_version integer NOT NULL,
    hint           text NOT NULL,
    expires_at     timestamptz,
    revoked_at     timestamptz,
    created_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX operator_tokens_digest ON operator_tokens (digest);

CREATE TABLE credentials (
    id             uuid PRIMARY KEY,
    team_id        uuid NOT NULL REFERENCES teams(id),
    app_id         uuid NOT NULL REFERENCES apps(id),
    name           text NOT NULL,
    digest         bytea NOT NULL,
    pepper_version integer NOT NULL,
    hint           text NOT NULL,
    models         text[] NOT NULL DEFAULT '{}',
    scopes         text[] NOT NULL DEFAULT '{}',
    expires_at     timestamptz,
    revoked_at     timestamptz,
    last_used_at   timestamptz,
    created_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX credentials_digest ON credentials (digest);
CREATE INDEX credentials_team ON credentials (team_id, created_at);
CREATE INDEX credentials_app ON credentials (app_id, created_at);

CREATE TABLE providers (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    kind        text NOT NULL,
    base_url    text NOT NULL,
    settings    jsonb NOT NULL DEFAULT '{}'::jsonb,
    created_at  timestamptz NOT NULL
);

CREATE TABLE provider_credentials (
    id             uuid PRIMARY KEY,
    provider_id    uuid NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    team_id        uuid NOT NULL,
    hint           text NOT NULL,
    format_version smallint NOT NULL,
    kek_id         text NOT NULL,
    wrapped_dek    bytea NOT NULL,
    nonce          bytea NOT NULL,
    ciphertext     bytea NOT NULL,
    priority       integer NOT NULL DEFAULT 0,
    revoked_at     timestamptz,
    created_at     timestamptz NOT NULL
);
CREATE INDEX provider_credentials_provider ON provider_credentials (provider_id, priority);

CREATE TABLE models (
    id          uuid PRIMARY KEY,
    name        text NOT NULL UNIQUE,
    created_at  timestamptz NOT NULL
);

CREATE TABLE deployments (
    id             uuid PRIMARY KEY,
    model_id       uuid NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    provider_id    uuid NOT NULL REFERENCES providers(id) ON DELETE CASCADE,
    upstream_model text NOT NULL,
    weight         integer NOT NULL,
    priority       integer NOT NULL,
    position       integer NOT NULL,
    created_at     timestamptz NOT NULL
);
CREATE INDEX deployments_model ON deployments (model_id, position);
CREATE INDEX deployments_provider ON deployments (provider_id);

-- No foreign keys: a call log is kept even if what it names is gone, and a batch never fails
-- because of one row's reference.
CREATE TABLE call_logs (
    id                  uuid PRIMARY KEY,
    created_at          timestamptz NOT NULL,
    request_id          text NOT NULL,
    team_id             uuid,
    app_id              uuid,
    credential_id       uuid,
    endpoint            text NOT NULL,
    model               text,
    provider            text,
    upstream_model      text,
    stream              boolean NOT NULL,
    status              integer NOT NULL,
    error_code          text,
    latency_ms          bigint NOT NULL,
    upstream_latency_ms bigint,
    ttft_ms             bigint,
    prompt_tokens       bigint NOT NULL,
    completion_tokens   bigint NOT NULL,
    cached_tokens       bigint NOT NULL,
    upstream_request_id text
);
CREATE INDEX call_logs_created ON call_logs (created_at, id);
CREATE INDEX call_logs_credential ON call_logs (credential_id, created_at);
CREATE INDEX call_logs_model ON call_logs (model, created_at);
CREATE INDEX call_logs_app ON call_logs (app_id, created_at);
CREATE INDEX call_logs_team ON call_logs (team_id, created_at);
