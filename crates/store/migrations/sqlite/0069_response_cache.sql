-- Issue 6: exact-match response cache. A public model opts in with a TTL (one row per model,
-- removed with the model); call-log rows of answers served from the cache are marked.
CREATE TABLE model_cache (
    model_id   TEXT PRIMARY KEY NOT NULL REFERENCES models(id) ON DELETE CASCADE,
    ttl_secs   INTEGER NOT NULL,
    updated_at INTEGER NOT NULL
);
ALTER TABLE call_logs ADD COLUMN cache_hit INTEGER NOT NULL DEFAULT 0;
