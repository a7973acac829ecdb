-- Issue 7: soft delete of apps (`DELETE /admin/v1/apps/{id}`). A deleted app keeps its row (its
-- keys, call logs and audit events still reference it) but is hidden from reads and lists.
ALTER TABLE apps ADD COLUMN deleted_at INTEGER;
