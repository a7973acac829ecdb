-- Issue 6: rate limits, token quotas and spend budgets per team, app, key or model.
-- scope: 'team' | 'app' | 'key' | 'model'; scope_id: the id (team/app/key) or the model name.
-- model: '' = every model; otherwise the limit applies only to calls of that public model.
-- Each limit column is NULL when not set. Spend is in micro-USD.
CREATE TABLE limits (
    id                   uuid PRIMARY KEY,
    scope                text NOT NULL,
    scope_id             text NOT NULL,
    model                text NOT NULL DEFAULT '',
    rpm                  bigint,
    concurrent           bigint,
    tpm                  bigint,
    tokens_per_day       bigint,
    tokens_per_month     bigint,
    usd_micros_per_day   bigint,
    usd_micros_per_month bigint,
    created_at           timestamptz NOT NULL,
    updated_at           timestamptz NOT NULL,
    UNIQUE (scope, scope_id, model)
);
