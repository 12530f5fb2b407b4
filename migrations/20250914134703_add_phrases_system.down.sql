DROP TABLE phrase_suggestions;
DROP TABLE user_excluded_phrases;
DROP TABLE phrases;
-- Fails rather than cascades if something else came to depend on pg_trgm since.
DROP EXTENSION IF EXISTS pg_trgm;
DELETE FROM users WHERE email = 'system@kennwilliamson.org';
