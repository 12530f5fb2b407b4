import { createHash, randomBytes } from 'node:crypto';
import { incidentTimers, phraseSuggestions, phrases, refreshTokens, users } from '../src/index.js';
import type { BenchContext } from './bench-context.js';
import type { SqlRunner } from './sql-runners.js';
import { pick, suggestionTaker } from './bench-context.js';

/**
 * The sides of a comparison: the library, and the same SQL by hand on three clients; and
 * through PgBouncer 1.24, the library at its defaults and the same SQL on raw `pg`.
 */
export const rawSides = ['raw', 'rawNamed', 'postgresJs', 'rawPooled'] as const;
export type LibrarySide = 'library' | 'libraryPooled';
export type Side = LibrarySide | (typeof rawSides)[number];

/** One hot path, done by the library, by hand-written SQL on a client, and by pgbench. */
export interface BenchOperation {
  name: string;
  /** The library's side; `side` picks the token chain (rotate) of that side. */
  library: (ctx: BenchContext, worker: number, side?: LibrarySide) => Promise<unknown>;
  /** The hand-written side; `side` picks the token chain (rotate) of that side. */
  raw: (run: SqlRunner, ctx: BenchContext, worker: number, side: Side) => Promise<unknown>;
  /**
   * The same statements as a pgbench script (`-M prepared`): keys are drawn with `random()`
   * and looked up in the bench_keys table (one more index probe than the other sides).
   */
  pgbench: string;
}

function newToken(): { token: string; hash: Buffer } {
  const bytes = randomBytes(32);
  return { token: bytes.toString('base64url'), hash: createHash('sha256').update(bytes).digest() };
}

function hashOf(token: string): Buffer {
  return createHash('sha256').update(Buffer.from(token, 'base64url')).digest();
}

// The same rotation, written by hand: lock the owner, lock the presented token, revoke it and
// insert its child in one statement, and return the token's state.
const rawRotateSql = `
  WITH owner AS (
    SELECT u.id, u.active FROM users u
    WHERE u.id = (SELECT user_id FROM refresh_tokens WHERE token_hash = $1)
    FOR SHARE
  ), presented AS (
    SELECT t.id, t.user_id, t.family_id, t.revoked_reason, o.active,
           t.family_expires_at <= now() AS family_expired, t.expires_at <= now() AS expired,
           t.revoked_at > now() - make_interval(secs => $2) AS revoked_within_grace,
           o.active AND t.revoked_at IS NULL AND t.expires_at > now() AND t.family_expires_at > now() AS rotatable
    FROM refresh_tokens t JOIN owner o ON o.id = t.user_id
    WHERE t.token_hash = $1
    FOR UPDATE OF t
  ), revoked AS (
    UPDATE refresh_tokens SET revoked_at = now(), revoked_reason = 'rotated', last_used_at = now()
    WHERE id = (SELECT id FROM presented WHERE rotatable)
    RETURNING id, user_id, family_id, created_at, expires_at, family_expires_at, family_created_at, device_info
  ), child AS (
    INSERT INTO refresh_tokens (user_id, token_hash, family_id, parent_id, expires_at, family_expires_at,
                                family_created_at, device_info, last_used_at)
    SELECT user_id, $3, family_id, id, least(now() + (expires_at - created_at), family_expires_at),
           family_expires_at, family_created_at, coalesce($4::text::jsonb, device_info), now()
    FROM revoked
    RETURNING expires_at
  )
  SELECT p.*, (SELECT expires_at FROM child) AS child_expires_at FROM presented p`;

const rawIssueSql = `
  INSERT INTO refresh_tokens (user_id, token_hash, family_id, expires_at, family_expires_at, device_info)
  SELECT id, $2, uuid_generate_v7(), now() + make_interval(secs => $3), now() + make_interval(secs => $4), $5::text::jsonb
  FROM (SELECT id FROM users WHERE id = $1 AND active FOR SHARE) AS owner
  RETURNING family_id AS "familyId", expires_at AS "expiresAt"`;

/** Each worker rotates its own chain of tokens, one chain per side. */
export type TokenChains = Record<Side, string[]>;

export function tokenChains(count: number): TokenChains {
  const chain = () => new Array<string>(count).fill('');
  return { library: chain(), libraryPooled: chain(), raw: chain(), rawNamed: chain(), postgresJs: chain(), rawPooled: chain() };
}

const phraseColumnsSql = `p.id, p.phrase_text AS text, p.active, p.created_by AS "createdBy", p.created_at AS "createdAt", p.updated_at AS "updatedAt"`;

// Rejection sampling by hand: 64 uniform draw numbers, the first that hits an eligible phrase.
const rawRandomSql = `
  SELECT ${phraseColumnsSql}
  FROM unnest(array(SELECT random() FROM generate_series(1, 64))) WITH ORDINALITY AS c (f, ord)
  JOIN phrases p ON p.draw_no = 1 + floor(c.f * (SELECT max(draw_no) FROM phrases))::int
  WHERE p.active
    AND NOT EXISTS (SELECT 1 FROM user_excluded_phrases e WHERE e.user_id = $1 AND e.phrase_id = p.id OFFSET 0)
  ORDER BY c.ord
  LIMIT 1`;

/** The textbook query the O(log n) draw replaces, over the same rows. */
export const orderByRandomSql = `
  SELECT ${phraseColumnsSql}
  FROM phrases p
  WHERE p.active AND NOT EXISTS (SELECT 1 FROM user_excluded_phrases e WHERE e.user_id = $1 AND e.phrase_id = p.id)
  ORDER BY random()
  LIMIT 1`;

/** The phrase search as it was written before (one ILIKE of the whole pattern), for the raw sides. */
export const rawListSql = `
  SELECT page.*, e.user_id IS NOT NULL AS excluded
  FROM (
    SELECT ${phraseColumnsSql}, count(*) OVER () AS total
    FROM phrases p
    WHERE p.active AND p.phrase_text ILIKE $2
    ORDER BY p.phrase_text, p.id
    LIMIT $3 OFFSET $4
  ) AS page
  LEFT JOIN user_excluded_phrases e ON e.phrase_id = page.id AND e.user_id = $1
  ORDER BY page.text, page.id`;

// As the library locks: the two users' rows (FOR KEY SHARE, as a deletion takes them first), then the suggestion.
const rawLockSuggestionSql = `
  SELECT user_id, phrase_text, status FROM phrase_suggestions s
  WHERE s.id = $1
    AND EXISTS (SELECT 1 FROM users su WHERE su.id = s.user_id FOR KEY SHARE)
    AND EXISTS (SELECT 1 FROM users au WHERE au.id = $2 FOR KEY SHARE)
    AND EXISTS (
      SELECT 1 FROM user_roles ur JOIN roles r ON r.id = ur.role_id JOIN users u ON u.id = ur.user_id
      WHERE ur.user_id = $2 AND r.name = 'admin' AND u.active)
  FOR UPDATE`;

const rawApproveSql = `
  WITH created AS (
    INSERT INTO phrases (phrase_text, created_by) VALUES ($3, $4)
    RETURNING id, phrase_text AS text, active, created_by AS "createdBy", created_at AS "createdAt", updated_at AS "updatedAt"
  )
  UPDATE phrase_suggestions SET status = 'approved', reviewed_by = $2, reviewed_at = now(), review_reason = NULL,
         phrase_id = created.id
  FROM created
  WHERE phrase_suggestions.id = $1
  RETURNING created.*`;

// Searches a user might type: two words of the seeded texts, about 1 % of the phrases each.
const searchWords = ['keep', 'going', 'steady', 'calm', 'build', 'focus', 'learn', 'rest', 'ship', 'care'];
export const searchTerms = searchWords.flatMap((a) => searchWords.map((b) => `${a} and ${b}`));

const userColumnsSql = `id, email, display_name AS "displayName", slug, active, created_at AS "createdAt", updated_at AS "updatedAt"`;

const findByEmailSql = `SELECT ${userColumnsSql}, password_hash AS "passwordHash" FROM users WHERE lower(email) = lower($1)`;

const latestPublicSql = `
  SELECT t.id, t.user_id AS "userId", t.reset_at AS "resetAt", t.notes, t.created_at AS "createdAt",
         t.updated_at AS "updatedAt", u.display_name AS "displayName"
  FROM users u JOIN incident_timers t ON t.user_id = u.id
  WHERE u.slug = $1 AND u.active
  ORDER BY t.reset_at DESC, t.id DESC LIMIT 1`;

/** Rows pgbench's scripts draw their keys from (see {@link BenchOperation.pgbench}). */
export const pgbenchKeys = {
  /** Refresh tokens seeded live for pgbench's rotations, per client. */
  rotationsPerClient: 4_000,
  /** Pending suggestions set aside for pgbench's approvals, per client. */
  approvalsPerClient: 2_000,
} as const;

const userKey = (variable: string) => `(SELECT id FROM bench_keys WHERE kind = 'u' AND n = :${variable})`;
// -D n=0 on the command line; pgbench keeps a client's variables from one run of the script to the next.
const nextN = '\\set n :n + 1';

/** Replaces $1, $2… by pgbench expressions (each a variable or a SQL expression of them). */
function pgbenchSql(sqlText: string, parameters: string[]): string {
  return sqlText.replace(/\$(\d+)/g, (_, n: string) => parameters[Number(n) - 1]!).replace(/\s+/g, ' ').trim();
}

export function benchOperations(chains: TokenChains, pendingSuggestionIds: string[]): BenchOperation[] {
  const nextSuggestion = suggestionTaker(pendingSuggestionIds);
  return [
    {
      name: 'refreshTokens.rotate',
      library: async (ctx, worker, side = 'library') => {
        const next = await refreshTokens.rotate(ctx.db, chains[side][worker]!);
        chains[side][worker] = next.token;
      },
      raw: async (run, _ctx, worker, side) => {
        const next = newToken();
        const rows = await run.query(rawRotateSql, [hashOf(chains[side][worker]!), 10, next.hash, null]);
        if (!rows[0]?.child_expires_at) throw new Error(`${side} rotation failed`);
        chains[side][worker] = next.token;
      },
      pgbench: [
        nextN,
        `${pgbenchSql(rawRotateSql, [
          "sha256(('pgbench-rotate-' || :client_id || '-' || :n)::bytea)",
          '10',
          "sha256(('pgbench-rotated-' || :client_id || '-' || :n)::bytea)",
          'NULL',
        ])};`,
      ].join('\n'),
    },
    {
      name: 'refreshTokens.issue',
      library: (ctx) => refreshTokens.issue(ctx.db, { userId: pick(ctx.userIds), deviceInfo: { userAgent: 'bench' } }),
      raw: async (run, ctx) => {
        const { token, hash } = newToken();
        const rows = await run.query(rawIssueSql, [pick(ctx.userIds), hash, 7 * 86_400, 30 * 86_400, JSON.stringify({ userAgent: 'bench' })]);
        if (!rows[0]) throw new Error('user inactive');
        return { token, ...rows[0] };
      },
      pgbench: [
        nextN,
        '\\set i random(1, 10000)',
        `${pgbenchSql(rawIssueSql, [
          userKey('i'),
          "sha256(('pgbench-issue-' || :client_id || '-' || :n)::bytea)",
          '604800',
          '2592000',
          `'{"userAgent": "bench"}'`,
        ])};`,
      ].join('\n'),
    },
    {
      name: 'phrases.randomForUser',
      library: (ctx) => phrases.randomForUser(ctx.db, pick(ctx.excluderIds)),
      raw: async (run, ctx) => {
        const userId = pick(ctx.excluderIds);
        const rows = await run.query(rawRandomSql, [userId]);
        return rows[0] ?? (await run.query(orderByRandomSql, [userId]))[0] ?? null;
      },
      pgbench: ['\\set i random(1, 10)', `${pgbenchSql(rawRandomSql, [userKey('i')])};`].join('\n'),
    },
    {
      name: 'phrases.listForUser (search)',
      library: (ctx) => phrases.listForUser(ctx.db, pick(ctx.excluderIds), { search: pick(searchTerms), limit: 20 }),
      raw: async (run, ctx) => {
        const rows = await run.query(rawListSql, [pick(ctx.excluderIds), `%${pick(searchTerms)}%`, 20, 0]);
        return { items: rows.map(({ total: _total, ...item }) => item), total: Number(rows[0]?.total ?? 0) };
      },
      pgbench: [
        '\\set i random(1, 10)',
        `\\set t random(1, ${searchTerms.length})`,
        `${pgbenchSql(rawListSql, [
          userKey('i'),
          `'%' || (ARRAY['${searchTerms.join("','")}'])[:t] || '%'`,
          '20',
          '0',
        ])};`,
      ].join('\n'),
    },
    {
      name: 'phraseSuggestions.approve',
      library: (ctx) => phraseSuggestions.approve(ctx.db, { suggestionId: nextSuggestion(), adminId: ctx.adminId }),
      raw: (run, ctx) =>
        run.transaction(async (query) => {
          const suggestionId = nextSuggestion();
          const [suggestion] = await query(rawLockSuggestionSql, [suggestionId, ctx.adminId]);
          if (!suggestion || suggestion.status !== 'pending') throw new Error('suggestion not pending');
          const [created] = await query(rawApproveSql, [suggestionId, ctx.adminId, suggestion.phrase_text, suggestion.user_id]);
          return created;
        }),
      pgbench: [
        nextN,
        '\\set admin 1',
        `\\set s :client_id * ${pgbenchKeys.approvalsPerClient} + :n`,
        'BEGIN;',
        `${pgbenchSql(rawLockSuggestionSql, ["(SELECT id FROM bench_keys WHERE kind = 's' AND n = :s)", userKey('admin')])}`,
        '\\gset',
        `${pgbenchSql(rawApproveSql, [
          "(SELECT id FROM bench_keys WHERE kind = 's' AND n = :s)",
          userKey('admin'),
          ':phrase_text',
          ':user_id',
        ])};`,
        'COMMIT;',
      ].join('\n'),
    },
    {
      name: 'users.findByEmail',
      library: (ctx) => users.findByEmail(ctx.db, pick(ctx.emails)),
      raw: async (run, ctx) => (await run.query(findByEmailSql, [pick(ctx.emails)]))[0] ?? null,
      pgbench: ['\\set i random(1, 10000)', `${pgbenchSql(findByEmailSql, ["'bench-' || :i || '@example.org'"])};`].join('\n'),
    },
    {
      name: 'incidentTimers.latestPublicBySlug',
      library: (ctx) => incidentTimers.latestPublicBySlug(ctx.db, pick(ctx.slugs)),
      raw: async (run, ctx) => {
        const [row] = await run.query(latestPublicSql, [pick(ctx.slugs)]);
        if (!row) return null;
        const { displayName, ...timer } = row;
        return { timer, displayName };
      },
      pgbench: ['\\set i random(1, 10000)', `${pgbenchSql(latestPublicSql, ["'bench-' || :i"])};`].join('\n'),
    },
  ];
}
