-- Issue 5: API-key attributes for token security (token-security.md §2.4-§2.6; DESIGN.md
-- "credentials"). ip_allow: CIDRs (empty = any address); labels: JSON object; dpop_jkt: RFC 7638
-- thumbprint the key is bound to (RFC 9449); rotated_from: the key this one replaced;
-- suspended_at: set by an anomaly policy (the key then fails like a revoked one); auto_suspend:
-- anomalies suspend the key.
ALTER TABLE credentials ADD COLUMN ip_allow text[] NOT NULL DEFAULT '{}';
ALTER TABLE credentials ADD COLUMN labels jsonb NOT NULL DEFAULT '{}';
ALTER TABLE credentials ADD COLUMN dpop_jkt text;
ALTER TABLE credentials ADD COLUMN rotated_from uuid;
ALTER TABLE credentials ADD COLUMN suspended_at timestamptz;
ALTER TABLE credentials ADD COLUMN auto_suspend boolean NOT NULL DEFAULT false;
