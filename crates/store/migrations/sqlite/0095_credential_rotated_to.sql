-- Issue 5 (L2): a key is rotated at most once. `rotated_to` is the successor's id, set by the
-- rotation's compare-and-set (`UPDATE … WHERE rotated_to IS NULL`), so concurrent rotations of
-- one key create exactly one successor; the others change nothing.
ALTER TABLE credentials ADD COLUMN rotated_to TEXT;
-- Keys rotated before this migration: mark them with their (earliest) successor.
UPDATE credentials SET rotated_to = (
    SELECT s.id FROM credentials s WHERE s.rotated_from = credentials.id ORDER BY s.created_at, s.id LIMIT 1
) WHERE rotated_to IS NULL AND EXISTS (SELECT 1 FROM credentials s WHERE s.rotated_from = credentials.id);
