-- Inactive users keep their data but cannot log in or appear on public pages.
ALTER TABLE users ADD COLUMN active boolean NOT NULL DEFAULT true;

-- Rolling refresh tokens with rotation and reuse detection. A family is one login on one
-- device; each rotation revokes the presented token and adds a child in the same family.
-- Only the SHA-256 of a token is stored: a copy of this table cannot be replayed.
CREATE TABLE refresh_tokens (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  token_hash bytea NOT NULL
    CONSTRAINT refresh_tokens_token_hash_length CHECK (octet_length(token_hash) = 32),
  family_id uuid NOT NULL,
  parent_id uuid REFERENCES refresh_tokens (id) ON DELETE SET NULL,
  -- Sliding expiry of this token; never later than the family's absolute expiry.
  expires_at timestamptz NOT NULL,
  family_expires_at timestamptz NOT NULL,
  family_created_at timestamptz NOT NULL DEFAULT now(),
  revoked_at timestamptz,
  revoked_reason text
    CONSTRAINT refresh_tokens_revoked_reason_values
      CHECK (revoked_reason IN ('rotated', 'reuse', 'logout', 'deactivated', 'admin')),
  device_info jsonb
    CONSTRAINT refresh_tokens_device_info_object CHECK (jsonb_typeof(device_info) = 'object'),
  last_used_at timestamptz,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT refresh_tokens_token_hash_key UNIQUE (token_hash),
  CONSTRAINT refresh_tokens_revocation_complete CHECK ((revoked_at IS NULL) = (revoked_reason IS NULL)),
  CONSTRAINT refresh_tokens_expiry_within_family CHECK (expires_at <= family_expires_at)
);
CREATE INDEX refresh_tokens_family_id_idx ON refresh_tokens (family_id);
CREATE INDEX refresh_tokens_parent_id_idx ON refresh_tokens (parent_id) WHERE parent_id IS NOT NULL;
-- Live tokens per user: sessions list, revoke-all, deactivation.
CREATE INDEX refresh_tokens_user_id_live_idx ON refresh_tokens (user_id) WHERE revoked_at IS NULL;
-- Purge scans by expiry and by revocation time.
CREATE INDEX refresh_tokens_expires_at_idx ON refresh_tokens (expires_at);
CREATE INDEX refresh_tokens_revoked_at_idx ON refresh_tokens (revoked_at) WHERE revoked_at IS NOT NULL;
CREATE TRIGGER refresh_tokens_updated_at BEFORE UPDATE ON refresh_tokens
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();
