-- migrate:no-transaction
-- Restores the partial index of 20250914134654_add_refresh_tokens_and_user_active.
CREATE INDEX CONCURRENTLY refresh_tokens_user_id_live_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;
DROP INDEX CONCURRENTLY refresh_tokens_user_id_revoked_at_idx;
