import { randomBytes } from 'node:crypto';
import { CamelCasePlugin, type Kysely, PostgresDialect, sql, Kysely as KyselyClass } from 'kysely';
import pg from 'pg';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { DB } from '../../generated/db.js';
import * as api from '../../src/index.js';
import { incidentTimers, phraseSuggestions, phrases, refreshTokens, users } from '../../src/index.js';
import { newAdmin, newUser } from '../support/factories.js';
import { useTestDatabase } from '../support/test-database.js';

// Plugins never change what a function does (issue 18): every public query function, given a
// Kysely that carries CamelCasePlugin (the service's own, or `db.withPlugin(…)`), returns what
// it returns on the plain `db` and leaves the database as it leaves it. Each case below makes
// fresh rows with the plain `db`, runs the function on one executor, and records its result
// (or typed error) and, where the function writes, what it wrote; the records of every
// executor must equal the plain one's, with the values that differ between two runs (ids,
// tokens, times, the fresh names) replaced by where they came from.
const testDb = useTestDatabase();
const camel = () => new CamelCasePlugin();

type Context = Record<string, unknown>;
interface Case {
  /** Fresh rows for one run, made with the plain db. */
  setup?: (db: Kysely<DB>) => Promise<Context>;
  run: (db: api.Executor, ctx: Context) => Promise<unknown>;
  /** What the run left in the database, read with the plain db. */
  after?: (db: Kysely<DB>, ctx: Context) => Promise<unknown>;
}

const unique = () => randomBytes(5).toString('hex');
const hash = '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA';
// A jsonb value whose keys a result-renaming plugin would camelCase.
const deviceInfo = { user_agent: 'Firefox', screen_size: { css_width: 1280 } };
const outcome = <T>(promise: Promise<T>): Promise<T | { error: string; code: string; field?: unknown; entity?: unknown }> =>
  promise.catch((error: api.DbError & { field?: unknown; entity?: unknown }) => ({
    error: error.constructor.name,
    code: error.code,
    ...(error.field === undefined ? {} : { field: error.field }),
    ...(error.entity === undefined ? {} : { entity: error.entity }),
  }));

async function userWithSessions(db: Kysely<DB>, sessions: number) {
  const user = await newUser(db);
  const tokens = [];
  for (let i = 0; i < sessions; i++) tokens.push(await refreshTokens.issue(db, { userId: user.id, deviceInfo }));
  return { user, tokens };
}

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

async function onlyPending(db: Kysely<DB>, count: number) {
  await db.updateTable('phrase_suggestions').set({ status: 'rejected', reviewed_at: sql`now()` }).where('status', '=', 'pending').execute();
  const { user } = await userWithSessions(db, 0);
  const admin = await newAdmin(db);
  const suggestions = [];
  for (let i = 0; i < count; i++) suggestions.push(await phraseSuggestions.submit(db, user.id, `Pending ${unique()}`));
  return { user, admin, suggestions };
}

const cases: Record<string, Record<string, Case>> = {
  users: {
    create: {
      setup: async () => ({ email: `Camel-${unique()}@Example.org`, slug: `camel-${unique()}` }),
      run: (db, c) => users.create(db, { email: c.email as string, passwordHash: hash, displayName: 'Camel Case', slug: c.slug as string }),
      after: (db, c) => db.selectFrom('users').select(['display_name', 'active']).where('slug', '=', c.slug as string).execute(),
    },
    findById: { setup: async (db) => ({ user: await newUser(db) }), run: (db, c) => users.findById(db, (c.user as users.User).id) },
    findByEmail: {
      setup: async (db) => ({ user: await newUser(db) }),
      run: (db, c) => users.findByEmail(db, (c.user as users.User).email.toUpperCase()),
    },
    findBySlug: { setup: async (db) => ({ user: await newUser(db) }), run: (db, c) => users.findBySlug(db, (c.user as users.User).slug) },
    updateProfile: {
      setup: async (db) => ({ user: await newUser(db), slug: `renamed-${unique()}` }),
      run: (db, c) => users.updateProfile(db, (c.user as users.User).id, { displayName: 'Renamed', slug: c.slug as string }),
    },
    updatePassword: {
      setup: async (db) => userWithSessions(db, 3),
      run: (db, c) =>
        users.updatePassword(db, (c.user as users.User).id, `${hash}x`, {
          keepFamilyId: (c.tokens as refreshTokens.IssuedToken[])[0]!.familyId,
        }),
      after: (db, c) => tokenStates(db, (c.user as users.User).id),
    },
    setActive: {
      setup: async (db) => userWithSessions(db, 2),
      run: async (db, c) => [await users.setActive(db, (c.user as users.User).id, false), await users.setActive(db, (c.user as users.User).id, true)],
      after: (db, c) => tokenStates(db, (c.user as users.User).id),
    },
    isSlugAvailable: {
      setup: async (db) => ({ user: await newUser(db) }),
      run: async (db, c) => {
        const user = c.user as users.User;
        return [await users.isSlugAvailable(db, user.slug), await users.isSlugAvailable(db, user.slug, { excludeUserId: user.id })];
      },
    },
    getRoles: { setup: async (db) => ({ admin: await newAdmin(db) }), run: (db, c) => users.getRoles(db, (c.admin as users.User).id) },
    grantRole: {
      setup: async (db) => ({ user: await newUser(db), admin: await newAdmin(db) }),
      run: async (db, c) => [
        await users.grantRole(db, (c.user as users.User).id, 'admin', { grantedBy: (c.admin as users.User).id }),
        await outcome(users.grantRole(db, (c.user as users.User).id, 'no-such-role')),
      ],
      after: (db, c) =>
        db.selectFrom('user_roles').select(['role_id', 'granted_by']).where('user_id', '=', (c.user as users.User).id).orderBy('role_id').execute(),
    },
    revokeRole: {
      setup: async (db) => ({ admin: await newAdmin(db) }),
      run: async (db, c) => [await users.revokeRole(db, (c.admin as users.User).id, 'admin'), await users.revokeRole(db, (c.admin as users.User).id, 'admin')],
    },
  },
  refreshTokens: {
    issue: {
      setup: async (db) => ({ user: await newUser(db) }),
      run: (db, c) => refreshTokens.issue(db, { userId: (c.user as users.User).id, deviceInfo }),
      after: (db, c) => tokenStates(db, (c.user as users.User).id),
    },
    rotate: {
      setup: async (db) => userWithSessions(db, 1),
      run: async (db, c) => {
        const { token } = (c.tokens as refreshTokens.IssuedToken[])[0]!;
        return [
          await refreshTokens.rotate(db, token, { deviceInfo: { ...deviceInfo, rotated_by: 'test' } }),
          await outcome(refreshTokens.rotate(db, token, { reuseGraceSeconds: 0 })),
        ];
      },
      after: (db, c) => tokenStates(db, (c.user as users.User).id),
    },
    revoke: {
      setup: async (db) => userWithSessions(db, 2),
      run: async (db, c) => {
        const [first] = c.tokens as refreshTokens.IssuedToken[];
        return [await refreshTokens.revoke(db, first!.token), await refreshTokens.revoke(db, first!.token)];
      },
      after: (db, c) => tokenStates(db, (c.user as users.User).id),
    },
    revokeAllForUser: {
      setup: async (db) => userWithSessions(db, 2),
      run: (db, c) => refreshTokens.revokeAllForUser(db, (c.user as users.User).id),
      after: (db, c) => tokenStates(db, (c.user as users.User).id),
    },
    listSessions: { setup: async (db) => userWithSessions(db, 2), run: (db, c) => refreshTokens.listSessions(db, (c.user as users.User).id) },
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
      after: (db, c) => tokenStates(db, (c.user as users.User).id),
    },
  },
  incidentTimers: {
    create: {
      setup: async (db) => ({ user: await newUser(db) }),
      run: async (db, c) => [
        await incidentTimers.create(db, { userId: (c.user as users.User).id, notes: 'first', resetAt: new Date('2025-01-02T03:04:05Z') }),
        await outcome(incidentTimers.create(db, { userId: '01890000-0000-7000-8000-00000000dead' })),
      ],
    },
    listForUser: {
      setup: async (db) => {
        const user = await newUser(db);
        for (const day of [1, 2]) await incidentTimers.create(db, { userId: user.id, resetAt: new Date(`2025-01-0${day}T00:00:00Z`) });
        return { user };
      },
      run: (db, c) => incidentTimers.listForUser(db, (c.user as users.User).id, { limit: 1 }),
    },
    latestPublicBySlug: {
      setup: async (db) => {
        const user = await newUser(db);
        await incidentTimers.create(db, { userId: user.id, notes: 'public' });
        return { user };
      },
      run: (db, c) => incidentTimers.latestPublicBySlug(db, (c.user as users.User).slug),
    },
    update: {
      setup: async (db) => {
        const user = await newUser(db);
        return { user, timer: await incidentTimers.create(db, { userId: user.id }) };
      },
      run: (db, c) =>
        incidentTimers.update(db, { id: (c.timer as incidentTimers.IncidentTimer).id, userId: (c.user as users.User).id }, { notes: 'changed' }),
    },
    remove: {
      setup: async (db) => {
        const user = await newUser(db);
        return { user, timer: await incidentTimers.create(db, { userId: user.id }) };
      },
      run: async (db, c) => {
        const ref = { id: (c.timer as incidentTimers.IncidentTimer).id, userId: (c.user as users.User).id };
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
      run: (db, c) => phrases.randomForUser(db, (c.user as users.User).id),
    },
    randomForSlug: {
      setup: async (db) => {
        const [user, admin] = [await newUser(db), await newAdmin(db)];
        const phrase = await phrases.create(db, { text: `Only one ${unique()}`, createdBy: admin.id });
        await excludeAllBut(db, user.id, phrase.id);
        return { user, phrase };
      },
      run: (db, c) => phrases.randomForSlug(db, (c.user as users.User).slug),
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
        await phrases.listForUser(db, (c.user as users.User).id, { search: c.word as string }),
        (await phrases.listForUser(db, (c.user as users.User).id, { limit: 1 })).items.map((item) => Object.keys(item)),
      ],
    },
    exclude: {
      setup: async (db) => {
        const [user, admin] = [await newUser(db), await newAdmin(db)];
        return { user, phrase: await phrases.create(db, { text: `Excluded ${unique()}`, createdBy: admin.id }) };
      },
      run: async (db, c) => [
        await phrases.exclude(db, (c.user as users.User).id, (c.phrase as phrases.Phrase).id),
        await phrases.exclude(db, (c.user as users.User).id, (c.phrase as phrases.Phrase).id),
        await outcome(phrases.exclude(db, (c.user as users.User).id, '01890000-0000-7000-8000-00000000dead')),
      ],
      after: (db, c) => db.selectFrom('user_excluded_phrases').select('phrase_id').where('user_id', '=', (c.user as users.User).id).execute(),
    },
    include: {
      setup: async (db) => {
        const [user, admin] = [await newUser(db), await newAdmin(db)];
        const phrase = await phrases.create(db, { text: `Included ${unique()}`, createdBy: admin.id });
        await phrases.exclude(db, user.id, phrase.id);
        return { user, phrase };
      },
      run: (db, c) => phrases.include(db, (c.user as users.User).id, (c.phrase as phrases.Phrase).id),
      after: (db, c) => db.selectFrom('user_excluded_phrases').select('phrase_id').where('user_id', '=', (c.user as users.User).id).execute(),
    },
    listExcluded: {
      setup: async (db) => {
        const [user, admin] = [await newUser(db), await newAdmin(db)];
        const phrase = await phrases.create(db, { text: `Excluded ${unique()}`, createdBy: admin.id });
        await phrases.exclude(db, user.id, phrase.id);
        return { user, phrase };
      },
      run: (db, c) => phrases.listExcluded(db, (c.user as users.User).id),
    },
    create: {
      setup: async (db) => ({ user: await newUser(db), admin: await newAdmin(db), text: `Created ${unique()}` }),
      run: async (db, c) => [
        await phrases.create(db, { text: c.text as string, createdBy: (c.admin as users.User).id }),
        await outcome(phrases.create(db, { text: c.text as string, createdBy: (c.user as users.User).id })),
      ],
    },
    update: {
      setup: async (db) => {
        const admin = await newAdmin(db);
        return { admin, phrase: await phrases.create(db, { text: `Updated ${unique()}`, createdBy: admin.id }), text: `Now ${unique()}` };
      },
      run: (db, c) =>
        phrases.update(db, { phraseId: (c.phrase as phrases.Phrase).id, adminId: (c.admin as users.User).id }, { text: c.text as string, active: false }),
    },
    list: {
      setup: async (db) => {
        const admin = await newAdmin(db);
        const word = `w${unique()}`;
        for (const n of [1, 2]) await phrases.create(db, { text: `Admin ${word} ${n}`, createdBy: admin.id });
        return { admin, word };
      },
      run: (db, c) => phrases.list(db, (c.admin as users.User).id, { search: c.word as string, limit: 1 }),
    },
    count: { run: (db) => phrases.count(db) },
  },
  phraseSuggestions: {
    submit: {
      setup: async (db) => ({ user: await newUser(db), text: `Suggested ${unique()}` }),
      run: async (db, c) => [
        await phraseSuggestions.submit(db, (c.user as users.User).id, c.text as string),
        await outcome(phraseSuggestions.submit(db, '01890000-0000-7000-8000-00000000dead', c.text as string)),
      ],
    },
    listForUser: { setup: (db) => onlyPending(db, 2), run: (db, c) => phraseSuggestions.listForUser(db, (c.user as users.User).id) },
    listPending: { setup: (db) => onlyPending(db, 2), run: (db, c) => phraseSuggestions.listPending(db, (c.admin as users.User).id, { limit: 1 }) },
    approve: {
      setup: (db) => onlyPending(db, 1),
      run: async (db, c) => {
        const decision = { suggestionId: (c.suggestions as phraseSuggestions.PhraseSuggestion[])[0]!.id, adminId: (c.admin as users.User).id, reason: 'Lovely' };
        return [await phraseSuggestions.approve(db, decision), await outcome(phraseSuggestions.approve(db, decision))];
      },
      after: (db, c) =>
        db
          .selectFrom('phrase_suggestions')
          .select(['status', 'review_reason', 'phrase_id'])
          .where('id', '=', (c.suggestions as phraseSuggestions.PhraseSuggestion[])[0]!.id)
          .execute(),
    },
    reject: {
      setup: (db) => onlyPending(db, 1),
      run: (db, c) =>
        phraseSuggestions.reject(db, {
          suggestionId: (c.suggestions as phraseSuggestions.PhraseSuggestion[])[0]!.id,
          adminId: (c.admin as users.User).id,
          reason: 'Not now',
        }),
    },
    countPending: { setup: (db) => onlyPending(db, 3), run: (db) => phraseSuggestions.countPending(db) },
  },
};

const uuidPattern = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const tokenPattern = /^[A-Za-z0-9_-]{43}$/;

/**
 * The record of one run with the values that differ between runs named instead: a value
 * from the context by its path there (`<user.email>`), any other id by the order it first
 * appeared in (`<id 1>`), tokens and times by their kind. Keys and every other value stay.
 */
function normalised(value: unknown, ctx: Context): unknown {
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

describe('plugins on the caller’s Kysely', () => {
  let ownPool: pg.Pool;
  let ownKysely: Kysely<DB>;
  beforeAll(() => {
    // A service's own Kysely, not made by createDb, with the most common plugin.
    ownPool = new pg.Pool({ connectionString: testDb.url, max: 2 });
    ownKysely = new KyselyClass<DB>({ dialect: new PostgresDialect({ pool: ownPool }), plugins: [camel()] });
  });
  afterAll(async () => {
    await ownKysely?.destroy();
  });

  const executors: Array<[string, () => api.Executor]> = [
    ['db.withPlugin(new CamelCasePlugin())', () => testDb.db.withPlugin(camel())],
    ['a service’s own Kysely with CamelCasePlugin', () => ownKysely],
    ['a transaction of a service’s own Kysely with CamelCasePlugin', () => ownKysely],
  ];

  async function record(name: string, testCase: Case, executor: api.Executor, inTransaction: boolean) {
    const ctx = (await testCase.setup?.(testDb.db)) ?? {};
    const run = () =>
      inTransaction
        ? (executor as Kysely<DB>).transaction().execute((trx) => testCase.run(trx, ctx))
        : testCase.run(executor, ctx);
    // rotate refuses a transaction with a ValidationError: the same on every executor.
    const result = await outcome(run() as Promise<unknown>);
    const after = await testCase.after?.(testDb.db, ctx);
    return normalised({ result, after }, ctx);
  }

  const table = Object.entries(cases).flatMap(([namespace, functions]) =>
    Object.entries(functions).map(([name, testCase]) => [`${namespace}.${name}`, testCase] as const),
  );

  it('has a case for every query function the package exports', () => {
    const exported = Object.entries({ users, refreshTokens, incidentTimers, phrases, phraseSuggestions }).flatMap(([namespace, module]) =>
      Object.entries(module)
        .filter(([name, value]) => typeof value === 'function' && !(namespace === 'refreshTokens' && name === 'configure'))
        .map(([name]) => `${namespace}.${name}`),
    );
    expect(table.map(([name]) => name).sort()).toEqual(exported.sort());
  });

  describe.each(executors)('through %s', (executorName, executor) => {
    const inTransaction = executorName.startsWith('a transaction');
    it.each(table)('%s returns and writes what it does on the plain db', async (name, testCase) => {
      const plain = await record(name, testCase, testDb.db, inTransaction);
      const plugged = await record(name, testCase, executor(), inTransaction);
      expect(plugged).toEqual(plain);
    });
  });
});

describe('errors on a Kysely that createDb did not make', () => {
  let ownPool: pg.Pool;
  let ownKysely: Kysely<DB>;
  beforeAll(() => {
    ownPool = new pg.Pool({ connectionString: testDb.url, max: 2 });
    ownKysely = new KyselyClass<DB>({ dialect: new PostgresDialect({ pool: ownPool }) });
  });
  afterAll(async () => {
    await ownKysely?.destroy();
  });

  it('are typed and scrubbed: a taken email is a UniqueViolationError whose cause withholds the value', async () => {
    const user = await newUser(testDb.db);
    const error = await users
      .create(ownKysely, { email: user.email.toUpperCase(), passwordHash: hash, displayName: 'Twin', slug: `twin-${unique()}` })
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(api.UniqueViolationError);
    expect((error as api.UniqueViolationError).field).toBe('email');
    const detail = ((error as api.UniqueViolationError).cause as { detail?: string }).detail;
    expect(detail).not.toContain(user.email.toUpperCase().split('@')[0]);
    expect(detail).toContain('values withheld');
  });

  it('are typed inside the service’s own transaction: an unknown user is NotFoundError', async () => {
    const error = await ownKysely
      .transaction()
      .execute((trx) => incidentTimers.create(trx, { userId: '01890000-0000-7000-8000-00000000dead' }))
      .catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(api.NotFoundError);
    expect((error as api.NotFoundError).entity).toBe('user');
  });

  it('refuses what is not a Kysely with a ValidationError naming db, before any query', async () => {
    const error = await users.findById(ownPool as never, '01890000-0000-7000-8000-000000000001').catch((caught: unknown) => caught);
    expect(error).toBeInstanceOf(api.ValidationError);
    expect((error as api.ValidationError).field).toBe('db');
  });
});
