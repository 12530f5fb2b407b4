-- users.updatePassword revokes every other session of the user; its tokens get a reason of
-- their own, so that "logged out" and "the password changed" stay distinguishable.
-- Widening the CHECK cannot fail for existing rows; the re-check scans the table once under
-- the ALTER's lock (about a second per million tokens).
ALTER TABLE refresh_tokens
  DROP CONSTRAINT refresh_tokens_revoked_reason_values,
  ADD CONSTRAINT refresh_tokens_revoked_reason_values
    CHECK (revoked_reason IN ('rotated', 'reuse', 'logout', 'deactivated', 'admin', 'password_changed'));
