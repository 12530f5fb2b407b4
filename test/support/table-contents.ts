import { withClient } from '../../src/db/with-client.js';

/** Every table of the schema, the migrations record included. */
export const everyTable = [
  'users',
  'roles',
  'user_roles',
  'incident_timers',
  'refresh_tokens',
  'phrases',
  'user_excluded_phrases',
  'phrase_suggestions',
  'schema_migrations',
] as const;


/**
 * Puts rows in every table: thousands of users with Unicode names (accents, CJK, Arabic,
 * emoji, full-width, tabs, quotes and backslashes), roles and grants, timers, refresh
 * tokens with nested jsonb device info and token chains, phrases, exclusions, and
 * suggestions in every state.
 */
export async function fillEveryTable(url: string, options: { users?: number; tag?: string } = {}): Promise<void> {
  const users = options.users ?? 600;
  const tag = options.tag ?? 'a';
  await withClient(url, async (client) => {
    await client.query(
      `INSERT INTO users (email, password_hash, display_name, slug, active)
       SELECT $2 || i || '@example.org',
              '$argon2id$v=19$m=65536,t=3,p=4$' || md5(i::text),
              (ARRAY['Zoë Ångström', 'Łukasz Żółć', '李小龙', 'محمد الأمين', '😀 Emoji 👩‍👩‍👧', 'Ｆｕｌｌｗｉｄｔｈ',
                     E'Tab\\tquote''"back\\\\slash'])[1 + i % 7] || ' ' || i,
              $2 || '-user-' || i,
              i % 10 <> 0
       FROM generate_series(1, $1::int) AS i`,
      [users, tag],
    );
    await client.query(`INSERT INTO roles (name, description) VALUES ('editor_' || $1, 'Édite les phrases — ✍️')`, [tag]);
    await client.query(
      `INSERT INTO user_roles (user_id, role_id, granted_by)
       SELECT u.id, r.id, (SELECT id FROM users WHERE slug = $1 || '-user-1')
       FROM users u CROSS JOIN roles r
       WHERE u.slug LIKE $1 || '-user-%' AND (r.name = 'user' OR (r.name = 'admin' AND u.slug LIKE '%0'))`,
      [tag],
    );
    await client.query(
      `INSERT INTO incident_timers (user_id, reset_at, notes)
       SELECT id, now() - make_interval(days => n * 3), CASE WHEN n = 1 THEN 'Spilled ☕ on the 🖥️ — again' END
       FROM users CROSS JOIN generate_series(1, 2) AS n WHERE slug LIKE $1 || '-user-%'`,
      [tag],
    );
    await client.query(
      `INSERT INTO refresh_tokens (user_id, token_hash, family_id, expires_at, family_expires_at, device_info, revoked_at, revoked_reason)
       SELECT id, sha256(convert_to(id::text || ':' || n, 'UTF8')), md5(id::text)::uuid,
              now() + interval '7 days', now() + interval '30 days',
              jsonb_build_object('userAgent', 'Mozilla/5.0 (X11; Linux) — ünïcødé 🚀', 'ip', '203.0.113.' || n,
                                 'screen', jsonb_build_object('w', 1920, 'h', 1080.5, 'touch', false, 'tags', jsonb_build_array('ß', null, 1e-3))),
              CASE WHEN n = 1 THEN now() END, CASE WHEN n = 1 THEN 'rotated' END
       FROM users CROSS JOIN generate_series(1, 2) AS n WHERE slug LIKE $1 || '-user-%'`,
      [tag],
    );
    await client.query(
      `UPDATE refresh_tokens child SET parent_id = parent.id
       FROM refresh_tokens parent
       WHERE child.family_id = parent.family_id AND child.revoked_at IS NULL AND parent.revoked_at IS NOT NULL`,
    );
    await client.query(
      `INSERT INTO phrases (phrase_text, created_by, active)
       SELECT 'Phrase ' || $1 || i || ': “Progress” ≠ perfection ✓', (SELECT id FROM users WHERE slug = $1 || '-user-1'), i % 7 <> 0
       FROM generate_series(1, 300) AS i`,
      [tag],
    );
    await client.query(
      `INSERT INTO user_excluded_phrases (user_id, phrase_id)
       SELECT u.id, p.id FROM (SELECT id FROM users WHERE slug LIKE $1 || '-user-%' ORDER BY slug LIMIT 50) u
       CROSS JOIN (SELECT id FROM phrases ORDER BY draw_no LIMIT 4) p`,
      [tag],
    );
    await client.query(
      `INSERT INTO phrase_suggestions (user_id, phrase_text, status, reviewed_by, reviewed_at, review_reason)
       SELECT id, 'Vorschlag für ' || slug || ' 🌱',
              (ARRAY['pending', 'approved', 'rejected'])[1 + i % 3],
              CASE WHEN i % 3 <> 0 THEN (SELECT id FROM users WHERE slug = $1 || '-user-1') END,
              CASE WHEN i % 3 <> 0 THEN now() END,
              CASE WHEN i % 3 = 2 THEN 'Zu lang — bitte kürzen' END
       FROM (SELECT id, slug, row_number() OVER (ORDER BY slug) AS i FROM users WHERE slug LIKE $1 || '-user-%') s
       WHERE i <= 200`,
      [tag],
    );
  });
}

/** Row count and an MD5 of every row's text form (sorted) for each table, plus the draw number sequence. */
export async function tableContents(url: string): Promise<Record<string, { rows: number; md5: string }>> {
  return withClient(url, async (client) => {
    const contents: Record<string, { rows: number; md5: string }> = {};
    for (const table of everyTable) {
      const { rows } = await client.query<{ rows: number; md5: string }>(
        `SELECT count(*)::int AS rows, md5(coalesce(string_agg(t::text, E'\\n' ORDER BY t::text COLLATE "C"), '')) AS md5 FROM ${table} t`,
      );
      contents[table] = rows[0]!;
    }
    const { rows } = await client.query<{ rows: number; md5: string }>(
      "SELECT 1 AS rows, md5(last_value || ':' || is_called) AS md5 FROM phrases_draw_no_seq",
    );
    contents.phrases_draw_no_seq = rows[0]!;
    return contents;
  });
}

/** The applied migrations as recorded: name, checksum, applied time and duration. */
export async function migrationsRecord(url: string): Promise<unknown[]> {
  return withClient(url, async (client) => (await client.query('SELECT * FROM schema_migrations ORDER BY name')).rows);
}

/** Runs one statement on a fresh connection. */
export async function execute(url: string, sql: string): Promise<void> {
  await withClient(url, (client) => client.query(sql).then(() => undefined));
}
