-- Issue 5 (L2): a key is rotated at most once. `rotated_to` is the successor's id, set by the
-- rotation's compare-and-set (`UPDATE … WHERE rotated_to IS NULL`, which re-checks the row
-- after waiting for a concurrent rotation's row lock), so concurrent rotations of one key create
-- exactly one successor; the others change nothing.
ALTER TABLE credentials ADD COLUMN rotated_to uuid;
-- Keys rotated before this migration: mark them with their (earliest) successor.
UPDATE credentials c SET rotated_to = (
    SELECT s.id FROM credentials s WHERE s.rotated_from = c.id ORDER BY s.created_at, s.id LIMIT 1
) WHERE c.rotated_to IS NULL AND EXISTS (SELECT 1 FROM credentials s WHERE s.rotated_from = c.id);
