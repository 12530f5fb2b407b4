-- Restores the CHECK of 20250914134654_add_refresh_tokens_and_user_active. Tokens revoked by a
-- password change become `logout` (the nearest old reason: the user ended those sessions), as
-- the old CHECK would refuse their reason; they stay revoked.
UPDATE refresh_tokens SET revoked_reason = 'logout' WHERE revoked_reason = 'password_changed';
ALTER TABLE refresh_tokens
  DROP CONSTRAINT refresh_tokens_revoked_reason_values,
  ADD CONSTRAINT refresh_tokens_revoked_reason_values
    CHECK (revoked_reason IN ('rotated', 'reuse', 'logout', 'deactivated', 'admin'));
