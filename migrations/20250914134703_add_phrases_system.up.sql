-- Motivational phrases, per-user exclusions and the suggestion/approval workflow.

CREATE TABLE phrases (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  -- Dense-ish draw number: a random phrase is picked by drawing numbers in 1..max(draw_no)
  -- and looking them up through the unique index (rejection sampling), which is uniform and
  -- O(log n) per draw instead of ORDER BY random() over the whole table.
  draw_no integer GENERATED ALWAYS AS IDENTITY,
  phrase_text text NOT NULL
    CONSTRAINT phrases_phrase_text_length CHECK (btrim(phrase_text) <> '' AND length(phrase_text) <= 500),
  active boolean NOT NULL DEFAULT true,
  -- Phrases outlive their author: deleting the user keeps the phrase, uncredited.
  created_by uuid REFERENCES users (id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT phrases_draw_no_key UNIQUE (draw_no)
);
CREATE INDEX phrases_created_by_idx ON phrases (created_by) WHERE created_by IS NOT NULL;
-- Search is a case-insensitive substring match (ILIKE '%…%'), which no B-tree can serve;
-- trigrams let it use an index at 100,000 phrases. pg_trgm is a trusted extension, so the
-- database owner may create it without being a superuser.
CREATE EXTENSION IF NOT EXISTS pg_trgm;
CREATE INDEX phrases_phrase_text_trgm_idx ON phrases USING gin (phrase_text gin_trgm_ops);
CREATE TRIGGER phrases_updated_at BEFORE UPDATE ON phrases
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE TABLE user_excluded_phrases (
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  phrase_id uuid NOT NULL REFERENCES phrases (id) ON DELETE CASCADE,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (user_id, phrase_id)
);
CREATE INDEX user_excluded_phrases_phrase_id_idx ON user_excluded_phrases (phrase_id);
CREATE TRIGGER user_excluded_phrases_updated_at BEFORE UPDATE ON user_excluded_phrases
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

CREATE TABLE phrase_suggestions (
  id uuid PRIMARY KEY DEFAULT uuid_generate_v7(),
  -- A user's suggestions go with the user; the phrases made from them stay (see phrases).
  user_id uuid NOT NULL REFERENCES users (id) ON DELETE CASCADE,
  phrase_text text NOT NULL
    CONSTRAINT phrase_suggestions_phrase_text_length CHECK (btrim(phrase_text) <> '' AND length(phrase_text) <= 500),
  status text NOT NULL DEFAULT 'pending'
    CONSTRAINT phrase_suggestions_status_values CHECK (status IN ('pending', 'approved', 'rejected')),
  -- The deciding admin; deleting that admin keeps the decision.
  reviewed_by uuid REFERENCES users (id) ON DELETE SET NULL,
  reviewed_at timestamptz,
  review_reason text
    CONSTRAINT phrase_suggestions_review_reason_length CHECK (length(review_reason) <= 500),
  -- The phrase an approval created.
  phrase_id uuid REFERENCES phrases (id) ON DELETE SET NULL,
  created_at timestamptz NOT NULL DEFAULT now(),
  updated_at timestamptz NOT NULL DEFAULT now(),
  CONSTRAINT phrase_suggestions_decision_recorded CHECK ((status = 'pending') = (reviewed_at IS NULL))
);
CREATE INDEX phrase_suggestions_user_id_idx ON phrase_suggestions (user_id, created_at DESC);
CREATE INDEX phrase_suggestions_pending_idx ON phrase_suggestions (created_at) WHERE status = 'pending';
CREATE INDEX phrase_suggestions_reviewed_by_idx ON phrase_suggestions (reviewed_by) WHERE reviewed_by IS NOT NULL;
CREATE INDEX phrase_suggestions_phrase_id_idx ON phrase_suggestions (phrase_id) WHERE phrase_id IS NOT NULL;
CREATE TRIGGER phrase_suggestions_updated_at BEFORE UPDATE ON phrase_suggestions
  FOR EACH ROW EXECUTE FUNCTION update_updated_at_column();

-- The system user owns the initial phrases. It is inactive and its password hash matches
-- no password, so nobody can log in as it or see it on a public page.
INSERT INTO users (email, password_hash, display_name, slug, active)
VALUES ('system@kennwilliamson.org', '!', 'System', 'system', false);

INSERT INTO phrases (phrase_text, created_by)
SELECT t.phrase_text, u.id
FROM users u
CROSS JOIN (VALUES
  ('Every day without an incident is a day well built.'),
  ('Small steps, taken daily, outrun big leaps taken rarely.'),
  ('Fix the cause, not the symptom.'),
  ('Calm is a skill. Practise it.'),
  ('The best time to write the test was before the bug. The next best is now.'),
  ('Progress, not perfection.'),
  ('Leave the campsite cleaner than you found it.'),
  ('Slow is smooth, and smooth is fast.'),
  ('Done is a feature.'),
  ('You are one good habit away from a better week.')
) AS t (phrase_text)
WHERE u.email = 'system@kennwilliamson.org';
