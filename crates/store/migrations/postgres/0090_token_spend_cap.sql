-- Issue 5: spend cap of issued tokens (USD micros), set by token exchange (`max_spend`) and
-- bounded by the parent's remaining spend cap; NULL = no cap of its own.
ALTER TABLE issued_tokens ADD COLUMN max_spend_micros bigint;
