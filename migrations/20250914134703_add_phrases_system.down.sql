DROP TABLE phrase_suggestions;
DROP TABLE user_excluded_phrases;
DROP TABLE phrases;
DELETE FROM users WHERE email = 'system@kennwilliamson.org';
