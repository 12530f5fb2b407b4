DROP TABLE phrase_suggestions;
DROP TABLE user_excluded_phrases;
DROP TABLE phrases;
DROP EXTENSION IF EXISTS pg_trgm;
DELETE FROM users WHERE email = 'system@kennwilliamson.org';
