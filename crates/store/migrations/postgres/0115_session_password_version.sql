-- Issue 7 (tester M4): a login racing a password change must not keep a session opened with the
-- old password. Each session records a keyed fingerprint of the password hash it was verified
-- against; a session whose fingerprint differs from the user's current hash no longer
-- authenticates. NULL for sessions created before this migration (accepted as before).
ALTER TABLE user_sessions ADD COLUMN password_version BYTEA;
