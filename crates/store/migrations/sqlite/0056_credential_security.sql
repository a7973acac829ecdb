-- Issue 5: API-key attributes for token security (token-security.md §2.4-§2.6; DESIGN.md
-- "credentials"). ip_allow: JSON array of CIDRs (empty = any address); labels: JSON object;
-- dpop_jkt: RFC 7638 thumbprint the key is bound to (RFC 9449); rotated_from: the key this one
-- replaced; suspended_at: set by an anomaly policy (the key then fails like a revoked one);
-- auto_suspend: 1 = anomalies suspend the key.
ALTER TABLE credentials ADD COLUMN ip_allow TEXT NOT NULL DEFAULT '[]';
ALTER TABLE credentials ADD COLUMN labels TEXT NOT NULL DEFAULT '{}';
ALTER TABLE credentials ADD COLUMN dpop_jkt TEXT;
ALTER TABLE credentials ADD COLUMN rotated_from TEXT;
ALTER TABLE credentials ADD COLUMN suspended_at INTEGER;
ALTER TABLE credentials ADD COLUMN auto_suspend INTEGER NOT NULL DEFAULT 0;
