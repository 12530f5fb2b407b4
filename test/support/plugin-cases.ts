// Every public query function, run the same way on any executor (issue 18: plugins never
// change what a function does). Shared by test/queries/plugins.test.ts and the consumer check's
// CamelCasePlugin service, which copies this file with the package entry's import rewritten to
// '@kennwilliamson/db': so both compare every function, from the sources and as installed.
import { randomBytes } from 'node:crypto';
import { type Kysely, sql } from 'kysely';
import type * as Api from '../../src/index.js';

type Package = typeof Api;
type DB = Api.DB;

/** What a case's setup made, for its run and its record. */
export type Context = Record<string, unknown>;

/** One query function's case: what it needs, how it is called, what it leaves behind. */
export interface PluginCase {
  /** Fresh rows for one run, made with the plain db. */
  setup?: (db: Kysely<DB>) => Promise<Context>;
  run: (db: Api.Executor, ctx: Context) => Promise<unknown>;
  /** What the run left in the database, read with the plain db. */
  after?: (db: Kysely<DB>, ctx: Context) => Promise<unknown>;
}

const unique = () => randomBytes(5).toString('hex');
const hash = '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA';
// A jsonb value whose keys a result-renaming plugin would camelCase.
const deviceInfo = { user_agent: 'Firefox', screen_size: { css_width: 1280 } };

/** A call's result, or its error as its class, code and field or entity. */
export const outcome = <T>(promise: Promise<T>): Promise<T | { error: string; code: string; field?: unknown; entity?: unknown }> =>
  promise.catch((error: Api.DbError & { field?: unknown; entity?: unknown }) => ({
    error: error.constructor.name,
    code: error.code,
    ...(error.field === undefined ? {} : { field: error.field }),
    ...(error.entity === undefined ? {} : { entity: error.entity }),
  }));

async function tokenStates(db: Kysely<DB>, userId: unknown) {
  return (
    await db
      .selectFrom('refresh_tokens')
      .select(['family_id', 'revoked_reason', 'device_info'])
      .where('user_id', '=', userId as string)
      .orderBy('id')
      .execute()
  ).map((row) => ({ ...row }));
}

// Leaves only `keep` drawable for `userId`, so that the random draws have one possible answer.
async function excludeAllBut(db: Kysely<DB>, userId: string, keep: string): Promise<void> {
  await sql`INSERT INTO user_excluded_phrases (user_id, phrase_id) SELECT ${userId}, id FROM phrases WHERE id <> ${keep}`.execute(db);
}

/**
 * A case for every query function of the package (a test checks that none is missing): each
 * makes fresh rows, so it can run once per executor and compare.
 */
export function pluginCases(api: Package): Record<string, Record<string, PluginCase>> {
  const { users, refreshTokens, incidentTimers, phrases, phraseSuggestions } = api;
  const newUser = async (db: Kysely<DB>) => {
    const id = unique();
    return users.create(db, { email: `user-${id}@example.org`, passwordHash: hash, displayName: `User ${id}`, slug: `user-${id}` });
  };
  const newAdmin = async (db: Kysely<DB>) => {
    const admin = await newUser(db);
    await users.grantRole(db, admin.id, 'admin');
    return admin;
  };
  const userWithSessions = async (db: Kysely<DB>, sessions: number) => {
    const user = await newUser(db);
    const tokens = [];
    for (let i = 0; i < sessions; i++) tokens.push(await refreshTokens.issue(db, { userId: user.id, deviceInfo }));
    return { user, tokens };
  };
  const onlyPending = async (db: Kysely<DB>, count: number) => {
    await db.updateTable('phrase_suggestions').set({ status: 'rejected', reviewed_at: sql`now()` }).where('status', '=', 'pending').execute();
    const user = await newUser(db);
    const admin = await newAdmin(db);
    const suggestions = [];
    for (let i = 0; i < count; i++) suggestions.push(await phraseSuggestions.submit(db, user.id, `Pending ${unique()}`));
    return { user, admin, suggestions };
  };
  return {
  users: {
    create: {
      setup: async () => ({ email: `Camel-${unique()}@Example.org`, slug: `camel-${unique()}` }),
      run: (db, c) => users.create(db, { email: c.email as string, passwordHash: hash, displayName: 'Camel Case', slug: c.slug as string }),
      after: (db, c) => db.selectFrom('users').select(['display_name', 'active']).where('slug', '=', c.slug as string).execute(),
    },
    findById: { setup: async (db) => ({ user: await newUser(db) }), run: (db, c) => users.findById(db, (c.user as Api.users.User).id) },
    findByEmail: {
      setup: async (db) => ({ user: await newUser(db) }),
      run: (db, c) => users.findByEmail(db, (c.user as Api.users.User).email.toUpperCase()),
    },
    findBySlug: { setup: async (db) => ({ user: await newUser(db) }), run: (db, c) => users.findBySlug(db, (c.user as Api.users.User).slug) },
    updateProfile: {
      setup: async (db) => ({ user: await newUser(db), slug: `renamed-${unique()}` }),
      run: (db, c) => users.updateProfile(db, (c.user as Api.users.User).id, { displayName: 'Renamed', slug: c.slug as string }),
    },
    updatePassword: {
      setup: async (db) => userWithSessions(db, 3),
      run: (db, c) =>
        users.updatePassword(db, (c.user as Api.users.User).id, `${hash}x`, {
          keepFamilyId: (c.tokens as Api.refreshTokens.IssuedToken[])[0]!.familyId,
        }),
      after: (db, c) => tokenStates(db, (c.user as Api.users.User).id),
    },
    setActive: {
      setup: async (db) => userWithSessions(db, 2),
      run: async (db, c) => [await users.setActive(db, (c.user as Api.users.User).id, false), await users.setActive(db, (c.user as Api.users.User).id, true)],
      after: (db, c) => tokenStates(db, (c.user as Api.users.User).id),
    },
    isSlugAvailable: {
      setup: async (db) => ({ user: await newUser(db) }),
      run: async (db, c) => {
        const user = c.user as Api.users.User;
        return [await users.isSlugAvailable(db, user.slug), await users.isSlugAvailable(db, user.slug, { excludeUserId: user.id })];
      },
    },
    getRoles: { setup: async (db) => ({ admin: await newAdmin(db) }), run: (db, c) => users.getRoles(db, (c.admin as Api.users.User).id) },
    grantRole: {
      setup: async (db) => ({ user: await newUser(db), admin: await newAdmin(db) }),
      run: async (db, c) => [
        await users.grantRole(db, (c.user as Api.users.User).id, 'admin', { grantedBy: (c.admin as Api.users.User).id }),
        await outcome(users.grantRole(db, (c.user as Api.users.User).id, 'no-such-role')),
      ],
      after: (db, c) =>
        db.selectFrom('user_roles').select(['role_id', 'granted_by']).where('user_id', '=', (c.user as Api.users.User).id).orderBy('role_id').execute(),
    },
    revokeRole: {
      setup: async (db) => ({ admin: await newAdmin(db) }),
      run: async (db, c) => [await users.revokeRole(db, (c.admin as Api.users.User).id, 'admin'), await users.revokeRole(db, (c.admin as Api.users.User).id, 'admin')],
    },
  },
  refreshTokens: {
    issue: {
      setup: async (db) => ({ user: await newUser(db) }),
      run: (db, c) => refreshTokens.issue(db, { userId: (c.user as Api.users.User).id, deviceInfo }),
      after: (db, c) => tokenStates(db, (c.user as Api.users.User).id),
    },
    rotate: {
      setup: async (db) => userWithSessions(db, 1),
      run: async (db, c) => {
        const { token } = (c.tokens as Api.refreshTokens.IssuedToken[])[0]!;
        return [
          await refreshTokens.rotate(db, token, { deviceInfo: { ...deviceInfo, rotated_by: 'test' } }),
          await outcome(refreshTokens.rotate(db, token, { reuseGraceSeconds: 0 })),
        ];
      },
      after: (db, c) => tokenStates(db, (c.user as Api.users.User).id),
    },
    revoke: {
      setup: async (db) => userWithSessions(db, 2),
      run: async (db, c) => {
        const [first] = c.tokens as Api.refreshTokens.IssuedToken[];
        return [await refreshTokens.revoke(db, first!.token), await refreshTokens.revoke(db, first!.token)];
      },
      after: (db, c) => tokenStates(db, (c.user as Api.users.User).id),
    },
    revokeAllForUser: {
      setup: async (db) => userWithSessions(db, 2),
      run: (db, c) => refreshTokens.revokeAllForUser(db, (c.user as Api.users.User).id),
      after: (db, c) => tokenStates(db, (c.user as Api.users.User).id),
    },
    listSessions: { setup: async (db) => userWithSessions(db, 2), run: (db, c) => refreshTokens.listSessions(db, (c.user as Api.users.User).id) },
    purgeExpired: {
      setup: async (db) => {
        const sessions = await userWithSessions(db, 3);
        await db
          .updateTable('refresh_tokens')
          .set({ expires_at: sql`now() - interval '1 day'` })
          .where('family_id', 'in', sessions.tokens.slice(1).map((token) => token.familyId))
          .execute();
        return sessions;
      },
      run: (db) => refreshTokens.purgeExpired(db, { batchSize: 1 }),
      after: (db, c) => tokenStates(db, (c.user as Api.users.User).id),
    },
  },
  incidentTimers: {
    create: {
      setup: async (db) => ({ user: await newUser(db) }),
      run: async (db, c) => [
        await incidentTimers.create(db, { userId: (c.user as Api.users.User).id, notes: 'first', resetAt: new Date('2025-01-02T03:04:05Z') }),
        await outcome(incidentTimers.create(db, { userId: '01890000-0000-7000-8000-00000000dead' })),
      ],
    },
    listForUser: {
      setup: async (db) => {
        const user = await newUser(db);
        for (const day of [1, 2]) await incidentTimers.create(db, { userId: user.id, resetAt: new Date(`2025-01-0${day}T00:00:00Z`) });
        return { user };
      },
      run: (db, c) => incidentTimers.listForUser(db, (c.user as Api.users.User).id, { limit: 1 }),
    },
    latestPublicBySlug: {
      setup: async (db) => {
        const user = await newUser(db);
        await incidentTimers.create(db, { userId: user.id, notes: 'public' });
        return { user };
      },
      run: (db, c) => incidentTimers.latestPublicBySlug(db, (c.user as Api.users.User).slug),
    },
    update: {
      setup: async (db) => {
        const user = await newUser(db);
        return { user, timer: await incidentTimers.create(db, { userId: user.id }) };
      },
      run: (db, c) =>
        incidentTimers.update(db, { id: (c.timer as Api.incidentTimers.IncidentTimer).id, userId: (c.user as Api.users.User).id }, { notes: 'changed' }),
    },
    remove: {
      setup: async (db) => {
        const user = await newUser(db);
        return { user, timer: await incidentTimers.create(db, { userId: user.id }) };
      },
      run: async (db, c) => {
        const ref = { id: (c.timer as Api.incidentTimers.IncidentTimer).id, userId: (c.user as Api.users.User).id };
        return [await incidentTimers.remove(db, ref), await outcome(incidentTimers.remove(db, ref))];
      },
    },
  },
  phrases: {
    randomForUser: {
      setup: async (db) => {
        const [user, admin] = [await newUser(db), await newAdmin(db)];
        const phrase = await phrases.create(db, { text: `Only one ${unique()}`, createdBy: admin.id });
        await excludeAllBut(db, user.id, phrase.id);
        return { user, phrase };
      },
      run: (db, c) => phrases.randomForUser(db, (c.user as Api.users.User).id),
    },
    randomForSlug: {
      setup: async (db) => {
        const [user, admin] = [await newUser(db), await newAdmin(db)];
        const phrase = await phrases.create(db, { text: `Only one ${unique()}`, createdBy: admin.id });
        await excludeAllBut(db, user.id, phrase.id);
        return { user, phrase };
      },
      run: (db, c) => phrases.randomForSlug(db, (c.user as Api.users.User).slug),
    },
    listForUser: {
      setup: async (db) => {
        const [user, admin] = [await newUser(db), await newAdmin(db)];
        const word = `w${unique()}`;
        const listed = [];
        for (const n of [1, 2]) listed.push(await phrases.create(db, { text: `Listed ${word} ${n}`, createdBy: admin.id }));
        await phrases.exclude(db, user.id, listed[0]!.id);
        return { user, word, listed };
      },
      run: async (db, c) => [
        await phrases.listForUser(db, (c.user as Api.users.User).id, { search: c.word as string }),
        (await phrases.listForUser(db, (c.user as Api.users.User).id, { limit: 1 })).items.map((item) => Object.keys(item)),
      ],
    },
    exclude: {
      setup: async (db) => {
        const [user, admin] = [await newUser(db), await newAdmin(db)];
        return { user, phrase: await phrases.create(db, { text: `Excluded ${unique()}`, createdBy: admin.id }) };
      },
      run: async (db, c) => [
        await phrases.exclude(db, (c.user as Api.users.User).id, (c.phrase as Api.phrases.Phrase).id),
        await phrases.exclude(db, (c.user as Api.users.User).id, (c.phrase as Api.phrases.Phrase).id),
        await outcome(phrases.exclude(db, (c.user as Api.users.User).id, '01890000-0000-7000-8000-00000000dead')),
      ],
      after: (db, c) => db.selectFrom('user_excluded_phrases').select('phrase_id').where('user_id', '=', (c.user as Api.users.User).id).execute(),
    },
    include: {
      setup: async (db) => {
        const [user, admin] = [await newUser(db), await newAdmin(db)];
        const phrase = await phrases.create(db, { text: `Included ${unique()}`, createdBy: admin.id });
        await phrases.exclude(db, user.id, phrase.id);
        return { user, phrase };
      },
      run: (db, c) => phrases.include(db, (c.user as Api.users.User).id, (c.phrase as Api.phrases.Phrase).id),
      after: (db, c) => db.selectFrom('user_excluded_phrases').select('phrase_id').where('user_id', '=', (c.user as Api.users.User).id).execute(),
    },
    listExcluded: {
      setup: async (db) => {
        const [user, admin] = [await newUser(db), await newAdmin(db)];
        const phrase = await phrases.create(db, { text: `Excluded ${unique()}`, createdBy: admin.id });
        await phrases.exclude(db, user.id, phrase.id);
        return { user, phrase };
      },
      run: (db, c) => phrases.listExcluded(db, (c.user as Api.users.User).id),
    },
    create: {
      setup: async (db) => ({ user: await newUser(db), admin: await newAdmin(db), text: `Created ${unique()}` }),
      run: async (db, c) => [
        await phrases.create(db, { text: c.text as string, createdBy: (c.admin as Api.users.User).id }),
        await outcome(phrases.create(db, { text: c.text as string, createdBy: (c.user as Api.users.User).id })),
      ],
    },
    update: {
      setup: async (db) => {
        const admin = await newAdmin(db);
        return { admin, phrase: await phrases.create(db, { text: `Updated ${unique()}`, createdBy: admin.id }), text: `Now ${unique()}` };
      },
      run: (db, c) =>
        phrases.update(db, { phraseId: (c.phrase as Api.phrases.Phrase).id, adminId: (c.admin as Api.users.User).id }, { text: c.text as string, active: false }),
    },
    list: {
      setup: async (db) => {
        const admin = await newAdmin(db);
        const word = `w${unique()}`;
        for (const n of [1, 2]) await phrases.create(db, { text: `Admin ${word} ${n}`, createdBy: admin.id });
        return { admin, word };
      },
      run: (db, c) => phrases.list(db, (c.admin as Api.users.User).id, { search: c.word as string, limit: 1 }),
    },
    count: { run: (db) => phrases.count(db) },
  },
  phraseSuggestions: {
    submit: {
      setup: async (db) => ({ user: await newUser(db), text: `Suggested ${unique()}` }),
      run: async (db, c) => [
        await phraseSuggestions.submit(db, (c.user as Api.users.User).id, c.text as string),
        await outcome(phraseSuggestions.submit(db, '01890000-0000-7000-8000-00000000dead', c.text as string)),
      ],
    },
    listForUser: { setup: (db) => onlyPending(db, 2), run: (db, c) => phraseSuggestions.listForUser(db, (c.user as Api.users.User).id) },
    listPending: { setup: (db) => onlyPending(db, 2), run: (db, c) => phraseSuggestions.listPending(db, (c.admin as Api.users.User).id, { limit: 1 }) },
    approve: {
      setup: (db) => onlyPending(db, 1),
      run: async (db, c) => {
        const decision = { suggestionId: (c.suggestions as Api.phraseSuggestions.PhraseSuggestion[])[0]!.id, adminId: (c.admin as Api.users.User).id, reason: 'Lovely' };
        return [await phraseSuggestions.approve(db, decision), await outcome(phraseSuggestions.approve(db, decision))];
      },
      after: (db, c) =>
        db
          .selectFrom('phrase_suggestions')
          .select(['status', 'review_reason', 'phrase_id'])
          .where('id', '=', (c.suggestions as Api.phraseSuggestions.PhraseSuggestion[])[0]!.id)
          .execute(),
    },
    reject: {
      setup: (db) => onlyPending(db, 1),
      run: (db, c) =>
        phraseSuggestions.reject(db, {
          suggestionId: (c.suggestions as Api.phraseSuggestions.PhraseSuggestion[])[0]!.id,
          adminId: (c.admin as Api.users.User).id,
          reason: 'Not now',
        }),
    },
    countPending: { setup: (db) => onlyPending(db, 3), run: (db) => phraseSuggestions.countPending(db) },
  },
};
}

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const tokenPattern = /^[A-Za-z0-9_-]{43}$/;

/**
 * The record of one run with the values that differ between runs named instead: a value
 * from the context by its path there (`<user.email>`), any other id by the order it first
 * appeared in (`<id 1>`), tokens and times by their kind. Keys and every other value stay.
 */
export function normalised(value: unknown, ctx: Context): unknown {
  const known = new Map<unknown, string>();
  const walkContext = (node: unknown, path: string) => {
    if (typeof node === 'string' && !known.has(node)) known.set(node, `<${path}>`);
    else if (node && typeof node === 'object' && !(node instanceof Date)) {
      for (const [key, child] of Object.entries(node)) walkContext(child, path ? `${path}.${key}` : key);
    }
  };
  walkContext(ctx, '');
  const ids = new Map<string, string>();
  const walk = (node: unknown): unknown => {
    if (node instanceof Date) return '<time>';
    if (typeof node === 'string') {
      if (known.has(node)) return known.get(node);
      if (uuidPattern.test(node)) return ids.get(node) ?? ids.set(node, `<id ${ids.size + 1}>`).get(node);
      if (tokenPattern.test(node)) return '<token>';
      for (const [text, name] of known) if (typeof text === 'string' && text.length > 8 && node.includes(text)) return node.replace(text, name);
      return node;
    }
    if (Buffer.isBuffer(node)) return '<bytes>';
    if (Array.isArray(node)) return node.map(walk);
    if (node && typeof node === 'object') return Object.fromEntries(Object.entries(node).map(([key, child]) => [key, walk(child)]));
    return node;
  };
  return walk(value);
}

/**
 * One run of a case on `executor` (in a transaction of its own when asked), recorded as what
 * the call returned or threw and what it left in the database, the values that differ
 * between two runs named instead (see {@link normalised}). Rows are made and read with `plain`.
 */
export async function recordRun(testCase: PluginCase, plain: Kysely<DB>, executor: Api.Executor, inTransaction: boolean): Promise<unknown> {
  const ctx = (await testCase.setup?.(plain)) ?? {};
  // In the service's own transaction: what the function returned or threw there. How the
  // transaction then ends is Kysely's, not the function's (where a case caught a failed call,
  // PostgreSQL rolls back at COMMIT: Kysely 0.28.19 and later and createDb's db report it, older
  // Kysely on a service's own pool does not); what the run left is `after`, read below.
  const run = async () => {
    if (!inTransaction) return testCase.run(executor, ctx);
    let result: unknown;
    await (executor as Kysely<DB>)
      .transaction()
      .execute(async (trx) => {
        result = await outcome(testCase.run(trx, ctx));
      })
      .catch(() => undefined);
    return result;
  };
  // rotate refuses a transaction with a ValidationError: the same on every executor.
  const result = await outcome(run());
  const after = await testCase.after?.(plain, ctx);
  return normalised({ result, after }, ctx);
}

/** The cases as `[namespace.function, case]` rows. */
export function caseTable(cases: Record<string, Record<string, PluginCase>>): Array<readonly [string, PluginCase]> {
  return Object.entries(cases).flatMap(([namespace, functions]) =>
    Object.entries(functions).map(([name, testCase]) => [`${namespace}.${name}`, testCase] as const),
  );
}

/** `namespace.function` of every query function the package exports (all but refreshTokens.configure, which takes no executor). */
export function exportedQueryFunctions(api: Package): string[] {
  const namespaces = { users: api.users, refreshTokens: api.refreshTokens, incidentTimers: api.incidentTimers, phrases: api.phrases, phraseSuggestions: api.phraseSuggestions };
  return Object.entries(namespaces).flatMap(([namespace, module]) =>
    Object.entries(module)
      .filter(([name, value]) => typeof value === 'function' && !(namespace === 'refreshTokens' && name === 'configure'))
      .map(([name]) => `${namespace}.${name}`),
  );
}
