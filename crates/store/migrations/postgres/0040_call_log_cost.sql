-- Issue 4: exact usage and cost per call. `cost_usd` is computed by the gateway from the call's
-- usage and the model catalog's prices (NULL when the upstream model is not in the catalog);
-- cache-write and reasoning tokens complete the usage (`prompt_tokens` includes cached and
-- cache-written tokens, `completion_tokens` includes reasoning tokens).
ALTER TABLE call_logs ADD COLUMN cache_write_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE call_logs ADD COLUMN reasoning_tokens bigint NOT NULL DEFAULT 0;
ALTER TABLE call_logs ADD COLUMN cost_usd double precision;
