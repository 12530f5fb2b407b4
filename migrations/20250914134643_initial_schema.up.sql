-- Users, roles and incident timers, plus the two functions every later table relies on:
-- uuid_generate_v7() for primary keys and update_updated_at_column() for updated_at.

-- uuid_generate_v7() must exist on every PostgreSQL from 15 to 18, so pick the best source:
-- the pg_uuidv7 extension (the docker-compose image ships it), the built-in uuidv7() on 18+,
-- else an RFC 9562 UUIDv7 in PL/pgSQL.
DO $uuid$
BEGIN
  IF EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = 'pg_uuidv7') THEN
    CREATE EXTENSION IF NOT EXISTS pg_uuidv7;
  ELSIF current_setting('server_version_num')::int >= 180000 THEN
    CREATE FUNCTION uuid_generate_v7() RETURNS uuid
      LANGUAGE sql VOLATILE PARALLEL SAFE
      AS 'SELECT uuidv7()';
  ELSE
    -- 48-bit Unix milliseconds, version 7, 12 bits of sub-millisecond time in rand_a
    -- (RFC 9562 section 6.2, method 3) so ids from one session sort by creation time,
    -- variant 10, and 62 random bits taken from gen_random_uuid().
    CREATE FUNCTION uuid_generate_v7() RETURNS uuid
      LANGUAGE plpgsql VOLATILE PARALLEL SAFE
      AS $fn$
      DECLARE
        now_us bigint := floor(extract(epoch FROM clock_timestamp()) * 1000000);
        unix_ms bigint := now_us / 1000;
        sub_ms int := ((now_us % 1000) * 4096 / 1000)::int;
        bytes bytea := uuid_send(gen_random_uuid());
      BEGIN
        bytes := overlay(bytes PLACING substring(int8send(unix_ms) FROM 3) FROM 1 FOR 6);
        bytes := set_byte(bytes, 6, 112 | (sub_ms >> 8));
        bytes := set_byte(bytes, 7, sub_ms & 255);
        bytes := set_byte(bytes, 8, 128 | (get_byte(bytes, 8) & 63));
        RETURN encode(bytes, 'hex')::uuid;
      END
      $fn$;
  END IF;
END
$uuid$;

CREATE FUNCTION update_updated_at_column() RETURNS trigger
  LANGUAGE plpgsql
  AS $fn$
  BEGIN
    NEW.updated_at = now();
    RETURN NEW;
  END
  $fn$;

CREATE TABLE users (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  email text NOT NULL
    CONSTRAINT users_email_format CHECK (length(email) <= 254 AND email ~ '^[^@[:space:]]+@[^@[:space:]]+$'),
  password_hash text NOT NULL
    CONSTRAINT users_password_hash_length CHECK (length(password_hash) BETWEEN 1 AND 512),
  display_name text NOT NULL
    CONSTRAINT users_display_name_length CHECK (btrim(display_name) <> '' AND length(display_name) <= 100),
  slug text NOT NULL
    CONSTRAINT users_slug_format CHECK (length(slug) <= 50 AND slug ~ '^[a-z0-9]+(-[a-z0-9]+)*$'),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT users_slug_key UNIQUE (slug)
);
-- Case-insensitive uniqueness: A@x.org and a@x.org are the same mailbox. Lookups use lower(email).
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE TRIGGER users_updated_at BEFORE UPDATE ON users
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE TABLE roles (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  name text NOT NULL
    CONSTRAINT roles_name_format CHECK (name ~ '^[a-z][a-z_]{0,49}$'),
  description text
    CONSTRAINT roles_description_length CHECK (length(description) <= 500),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT roles_name_key UNIQUE (name)
);
CREATE TRIGGER roles_updated_at BEFORE UPDATE ON roles
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

INSERT INTO roles (name, description) VALUES
  ('user', 'Every registered user'),
  ('admin', 'Manages phrases and reviews suggestions');

CREATE TABLE user_roles (
  -- A user's grants go with the user; a role in use cannot be deleted.
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  role_id uuid NOT NULL REFERENCES roles (id) ON DELETE RESTRICT,
  -- Who granted it; deleting that admin keeps the grant.
  granted_by uuid REFERENCES users (id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, role_id)
);
CREATE INDEX user_roles_role_id_idx ON user_roles (role_id);
CREATE INDEX user_roles_granted_by_idx ON user_roles (granted_by) WHERE granted_by IS NOT NULL;
CREATE TRIGGER user_roles_updated_at BEFORE UPDATE ON user_roles
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE TABLE incident_timers (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  reset_at timestamptz NOT NULL DEFAULT now(),
  notes text
    CONSTRAINT incident_timers_notes_length CHECK (length(notes) <= 2000),
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now()
);
-- Serves both "a user's timers, newest first" and "latest timer of a user".
CREATE INDEX incident_timers_user_id_reset_at_idx ON incident_timers (user_id, reset_at DESC);
CREATE TRIGGER incident_timers_updated_at BEFORE UPDATE ON incident_timers
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
