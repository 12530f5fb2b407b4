import { performance } from 'node:perf_hooks';
import type pg from 'pg';

/** The scale the benchmark seeds (100x a realistic instance). */
export const scale = {
  users: 10_000,
  timersPerUser: 3,
  phrases: 100_000,
  /** Users who have excluded every second phrase; randomForUser draws for them. */
  excluders: 10,
  refreshTokens: 1_000_000,
  /** Refresh tokens present for the "small table" rotate measurement. */
  refreshTokensSmall: 10_000,
  pendingSuggestions: 120_000,
} as const;

function formatCount(n: number): string {
  return n.toLocaleString('en-US');
}

/** Inserts `total` rows with `insert(from, to)` in chunks, printing progress. */
async function chunked(
  client: pg.ClientBase,
  label: string,
  total: number,
  insert: (from: number, to: number) => string,
  log: (line: string) => void,
  chunk = 100_000,
  start = 1,
): Promise<void> {
  const t0 = performance.now();
  for (let from = start; from < start + total; from += chunk) {
    const to = Math.min(from + chunk - 1, start + total - 1);
    await client.query(insert(from, to));
    log(`  ${label}: ${formatCount(to - start + 1)} / ${formatCount(total)}`);
  }
  log(`  ${label}: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** Seeds users, roles, timers, phrases, exclusions, suggestions and the first refresh tokens. */
export async function seedBase(client: pg.ClientBase, log: (line: string) => void): Promise<void> {
  log('seeding (100x scale)…');
  await chunked(
    client,
    'users',
    scale.users,
    (a, b) => `
      INSERT INTO users (email, password_hash, display_name, slug)
      SELECT 'bench-' || i || '@example.org', '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA',
             'Bench User ' || i, 'bench-' || i
      FROM generate_series(${a}, ${b}) i`,
    log,
  );
  await client.query(`
    INSERT INTO user_roles (user_id, role_id)
    SELECT u.id, r.id FROM users u CROSS JOIN roles r WHERE r.name = 'user' AND u.slug LIKE 'bench-%'`);
  await client.query(`
    INSERT INTO user_roles (user_id, role_id)
    SELECT u.id, r.id FROM users u CROSS JOIN roles r WHERE r.name = 'admin' AND u.slug = 'bench-1'`);
  await chunked(
    client,
    'incident_timers',
    scale.users * scale.timersPerUser,
    (a, b) => `
      INSERT INTO incident_timers (user_id, reset_at, notes)
      SELECT u.id, now() - (i % 1000) * interval '1 hour', 'Timer ' || i
      FROM generate_series(${a}, ${b}) i
      JOIN users u ON u.slug = 'bench-' || (1 + i % ${scale.users})`,
    log,
  );
  const words = ['keep', 'going', 'steady', 'calm', 'build', 'focus', 'learn', 'rest', 'ship', 'care'];
  await chunked(
    client,
    'phrases',
    scale.phrases,
    (a, b) => `
      INSERT INTO phrases (phrase_text)
      SELECT 'Phrase ' || i || ': ' || (ARRAY['${words.join("','")}'])[1 + i % 10] || ' and '
             || (ARRAY['${words.join("','")}'])[1 + (i / 10) % 10] || ' every day.'
      FROM generate_series(${a}, ${b}) i`,
    log,
  );
  await chunked(
    client,
    'user_excluded_phrases (half of all phrases, per excluding user)',
    scale.excluders,
    (a, b) => `
      INSERT INTO user_excluded_phrases (user_id, phrase_id)
      SELECT u.id, p.id FROM users u JOIN phrases p ON p.draw_no % 2 = 0
      WHERE u.slug IN (SELECT 'bench-' || i FROM generate_series(${a}, ${b}) i)`,
    log,
    1,
  );
  await chunked(
    client,
    'phrase_suggestions (pending)',
    scale.pendingSuggestions,
    (a, b) => `
      INSERT INTO phrase_suggestions (user_id, phrase_text)
      SELECT u.id, 'Suggested phrase number ' || i
      FROM generate_series(${a}, ${b}) i
      JOIN users u ON u.slug = 'bench-' || (1 + i % ${scale.users})`,
    log,
  );
  await seedRefreshTokens(client, 1, scale.refreshTokensSmall, log);
  await settle(client, log);
}

/**
 * After a bulk load: VACUUM ANALYZE (fresh statistics, visibility map, and the GIN pending
 * list flushed; a long pending list makes the planner shun the trigram index) and a
 * CHECKPOINT, so measurements do not pay for the seeding.
 */
export async function settle(client: pg.ClientBase, log: (line: string) => void): Promise<void> {
  const t0 = performance.now();
  await client.query('VACUUM ANALYZE');
  await client.query('CHECKPOINT');
  log(`  vacuum, analyze and checkpoint: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
}

/** Adds refresh tokens `from`..`from+count-1`: families of five, half of them already rotated. */
export async function seedRefreshTokens(
  client: pg.ClientBase,
  from: number,
  count: number,
  log: (line: string) => void,
): Promise<void> {
  await chunked(
    client,
    'refresh_tokens',
    count,
    (a, b) => `
      INSERT INTO refresh_tokens (user_id, token_hash, family_id, expires_at, family_expires_at,
                                  revoked_at, revoked_reason, device_info)
      SELECT u.id, sha256(('seed-token-' || i)::bytea),
             ('00000000-0000-7000-8000-' || lpad(to_hex(i / 5), 12, '0'))::uuid,
             now() + interval '7 days', now() + interval '30 days',
             CASE WHEN i % 5 <> 4 THEN now() - interval '1 hour' END,
             CASE WHEN i % 5 <> 4 THEN 'rotated' END,
             '{"userAgent": "bench"}'::jsonb
      FROM generate_series(${a}, ${b}) i
      JOIN users u ON u.slug = 'bench-' || (1 + (i / 5) % ${scale.users})`,
    log,
    100_000,
    from,
  );
}

// Words of everyday encouragement, for phrases that differ as people's own do.
const vocabulary = `
  about above after again always anchor ask attention back balance begin believe better bold
  borrow brave breathe bridge bright build calm candle care carry change cheer choose clear
  climb close comfort courage craft create curious dare day deep door dream early earn ease
  effort embrace energy enough even every evening face faith fall family far fear field find
  first focus follow forward free fresh friend garden gentle gift give glad goal good grace
  grateful grow habit half hand happen heart help here hold honest hope hour humble idea
  inside journey joy keep kind laugh learn least lesson light listen little look love make
  matter mind moment morning move music near need new next night notice now open patience
  path pause peace plan play practice present pride progress promise quiet rain reach ready
  remember repair rest return rise river road room root seed serve share shine ship simple
  slow small smile soft space speak spring stand start steady step still stone story strength
  summer sun swim take talk teach thank today together tomorrow trust truth try turn wait
  walk water wave welcome whole win wind wise wonder word work world write year yes young`
  .trim()
  .split(/\s+/);

/**
 * Rewrites every phrase as 4 to 11 words drawn at random from a vocabulary of about 250, as
 * people's own phrases differ; the seeded texts share most of their words, which no real list
 * does. Returns two-word search terms taken from the new texts, so that each matches something.
 */
export async function seedRealisticPhrases(client: pg.ClientBase, log: (line: string) => void): Promise<string[]> {
  const t0 = performance.now();
  await client.query(
    `UPDATE phrases p SET phrase_text = initcap(w.text) || '.'
     FROM (SELECT id, (SELECT string_agg(($1::text[])[1 + floor(random() * $2)::int], ' ')
                       FROM generate_series(1, 4 + draw_no % 8)) AS text
           FROM phrases) AS w
     WHERE w.id = p.id`,
    [vocabulary, vocabulary.length],
  );
  await client.query('VACUUM ANALYZE phrases');
  const { rows } = await client.query<{ term: string }>(
    `SELECT lower(words[k] || ' ' || words[k + 1]) AS term
     FROM (SELECT regexp_split_to_array(rtrim(phrase_text, '.'), ' ') AS words FROM phrases TABLESAMPLE BERNOULLI (0.2)) s,
          LATERAL (SELECT 1 + floor(random() * (array_length(words, 1) - 1))::int AS k) k
     LIMIT 100`,
  );
  log(`  realistic phrases: done in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  return rows.map((row) => row.term);
}
