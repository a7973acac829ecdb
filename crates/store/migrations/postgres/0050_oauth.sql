-- Issue 5: OAuth 2.0 authorization server (token-security.md §1.1, §1.3-1.7, §5.2).

CREATE TABLE oauth_clients (
    id             uuid PRIMARY KEY,
    team_id        uuid NOT NULL REFERENCES teams(id),
    app_id         uuid NOT NULL REFERENCES apps(id),
    name           text NOT NULL,
    auth_method    text NOT NULL,
    secret_digest  bytea,
    pepper_version integer NOT NULL,
    secret_hint    text,
    public_jwk     text,
    token_format   text NOT NULL,
    scopes         text[] NOT NULL DEFAULT '{}',
    models         text[] NOT NULL DEFAULT '{}',
    audiences      text[] NOT NULL DEFAULT '{}',
    access_ttl_secs bigint NOT NULL,
    revoked_at     timestamptz,
    created_at     timestamptz NOT NULL
);
CREATE INDEX oauth_clients_app ON oauth_clients (app_id, created_at);

CREATE TABLE issued_tokens (
    id             uuid PRIMARY KEY,
    kind           text NOT NULL,
    digest         bytea,
    pepper_version integer NOT NULL,
    hint           text NOT NULL,
    team_id        uuid NOT NULL REFERENCES teams(id),
    app_id         uuid NOT NULL REFERENCES apps(id),
    client_id      uuid,
    subject        text NOT NULL,
    parent_id      uuid,
    scopes         text[] NOT NULL DEFAULT '{}',
    models         text[] NOT NULL DEFAULT '{}',
    audience       text,
    max_tokens     bigint,
    act            text,
    binding_jkt    text,
    expires_at     timestamptz NOT NULL,
    consumed_at    timestamptz,
    revoked_at     timestamptz,
    created_at     timestamptz NOT NULL
);
CREATE UNIQUE INDEX issued_tokens_digest ON issued_tokens (digest);
CREATE INDEX issued_tokens_client ON issued_tokens (client_id);
CREATE INDEX issued_tokens_revoked ON issued_tokens (revoked_at);

CREATE TABLE signing_keys (
    kid            text PRIMARY KEY,
    alg            text NOT NULL,
    public_jwk     text NOT NULL,
    format_version smallint NOT NULL,
    kek_id         text NOT NULL,
    wrapped_dek    bytea NOT NULL,
    nonce          bytea NOT NULL,
    ciphertext     bytea NOT NULL,
    sign_from      timestamptz NOT NULL,
    retire_at      timestamptz,
    created_at     timestamptz NOT NULL
);

CREATE TABLE used_jtis (
    key            bytea PRIMARY KEY,
    expires_at     timestamptz NOT NULL
);
