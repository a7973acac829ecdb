-- Issue 6: failover. Upstream calls made per request (attempts, 0 = none) and the deployment of
-- the last attempt (the one that served on success): a deployment id or `provider/model`.
ALTER TABLE call_logs ADD COLUMN attempts integer NOT NULL DEFAULT 0;
ALTER TABLE call_logs ADD COLUMN deployment text;
