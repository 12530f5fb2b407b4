DROP TABLE incident_timers;
DROP TABLE user_roles;
DROP TABLE roles;
DROP TABLE users;
DROP FUNCTION update_updated_at_column();
-- Whichever source the up migration chose, remove it.
DROP EXTENSION IF EXISTS pg_uuidv7;
DROP FUNCTION IF EXISTS uuid_generate_v7();
