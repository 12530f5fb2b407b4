-- migrate:no-transaction
-- Deleting a user cascades to its tokens through a lookup by user_id alone, which the partial
-- index of live tokens (WHERE revoked_at IS NULL) cannot serve: it read the whole table,
-- revoked tokens and all, for every user deleted. One index on (user_id, revoked_at) serves
-- that lookup and the live-token queries (user_id = $1 AND revoked_at IS NULL) alike, in
-- place of the partial one. Built CONCURRENTLY, so that logins and refreshes go on meanwhile.
CREATE INDEX CONCURRENTLY refresh_tokens_user_id_revoked_at_idx ON refresh_tokens (user_id, revoked_at);
DROP INDEX CONCURRENTLY refresh_tokens_user_id_live_idx;
