-- Issue 6: rate limits, token quotas and spend budgets per team, app, key or model.
-- scope: 'team' | 'app' | 'key' | 'model'; scope_id: the id (team/app/key) or the model name.
-- model: '' = every model; otherwise the limit applies only to calls of that public model.
-- Each limit column is NULL when not set. Spend is in micro-USD.
CREATE TABLE limits (
    id                   TEXT PRIMARY KEY NOT NULL,
    scope                TEXT NOT NULL,
    scope_id             TEXT NOT NULL,
    model                TEXT NOT NULL DEFAULT '',
    rpm                  INTEGER,
    concurrent           INTEGER,
    tpm                  INTEGER,
    tokens_per_day       INTEGER,
    tokens_per_month     INTEGER,
    usd_micros_per_day   INTEGER,
    usd_micros_per_month INTEGER,
    created_at           INTEGER NOT NULL,
    updated_at           INTEGER NOT NULL,
    UNIQUE (scope, scope_id, model)
);
