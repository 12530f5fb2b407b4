// A CommonJS TypeScript service, compiled twice by the consumer check: with `nodenext` and with
// `node10` (NestJS's default: module commonjs), strict, skipLibCheck false; with `node10` it is
// also type-checked without esModuleInterop and allowSyntheticDefaultImports. It passes its own
// Kysely<DB>, Transaction<DB> and sql executions to the package, and runs against the database.
import { randomUUID } from 'node:crypto';
import { Kysely, sql, Transaction } from 'kysely';
import {
  createDb,
  type DB,
  incidentTimers,
  phraseSuggestions,
  phrases,
  poolOf,
  refreshTokens,
  UniqueViolationError,
  users,
  withSavepoint,
} from '@kennwilliamson/db';
import { backupSettings } from '@kennwilliamson/db/operations';

// Every query function takes the service's own Transaction<DB> and Kysely<DB>, checked for all
// of them at once (a function added later is covered too): the names of any that do not are
// the type of this constant, and `true` does not compile.
type Namespaces = {
  users: typeof users;
  refreshTokens: typeof refreshTokens;
  incidentTimers: typeof incidentTimers;
  phrases: typeof phrases;
  phraseSuggestions: typeof phraseSuggestions;
};
type TakesTheServicesExecutors<F> = F extends (db: infer Executor, ...rest: never[]) => unknown
  ? [Transaction<DB>, Kysely<DB>] extends [Executor, Executor]
    ? true
    : false
  : true;
type QueryFunctionNames<N extends keyof Namespaces> = Exclude<keyof Namespaces[N], 'configure'>;
type Refusing = {
  [N in keyof Namespaces]: {
    [F in QueryFunctionNames<N>]: TakesTheServicesExecutors<Namespaces[N][F]> extends true ? never : `${N}.${F & string}`;
  }[QueryFunctionNames<N>];
}[keyof Namespaces];
const everyQueryFunctionTakesTheServicesExecutors: [Refusing] extends [never] ? true : Refusing = true;

// pg's types, as the package's declarations give them to this service: a compiler that cannot
// read them makes them `any`, which a string is assignable to, and then `true` does not compile.
// (One of them `any` makes their union `any`.)
type PoolTypes = ReturnType<typeof poolOf>['pool'];
const pgTypesAreRead: [PoolTypes] extends [string] ? false : true = true;

const passwordHash = '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA';

async function register(trx: Transaction<DB>, email: string): Promise<string> {
  if (!(trx instanceof Transaction)) throw new Error('the transaction is not the service’s Transaction: two copies of kysely');
  const slug = `cjs-${randomUUID().slice(0, 8)}`;
  const user = await users.create(trx, { email, passwordHash, displayName: 'CommonJS', slug });
  await incidentTimers.create(trx, { userId: user.id, notes: 'first' });
  // The same email again, under a savepoint: a typed error, and the transaction carries on.
  await withSavepoint(trx, (sp) => users.create(sp, { email, passwordHash, displayName: 'Twin', slug: `${slug}-2` })).catch((error: unknown) => {
    if (!(error instanceof UniqueViolationError) || error.field !== 'email') throw error;
  });
  await refreshTokens.issue(trx, { userId: user.id });
  return user.id;
}

async function main(): Promise<void> {
  const db: Kysely<DB> = createDb({ databaseUrl: process.env.DATABASE_URL! });
  try {
    if (!(db instanceof Kysely)) throw new Error('createDb made a Kysely of another copy of kysely');
    await poolOf(db).ready();
    const email = `cjs-${randomUUID()}@example.org`;
    const id = await db.transaction().execute((trx) => register(trx, email));
    const found = await users.findByEmail(db, email.toUpperCase());
    if (found?.id !== id) throw new Error('the user registered in the service’s transaction was not found');
    const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM incident_timers WHERE user_id = ${id}`.execute(db);
    if (rows[0]?.n !== 1) throw new Error('the timer created in the same transaction is missing');
    const sessions = await db.transaction().execute(async (trx) => {
      await sql`SELECT set_config('application_name', 'cjs-service', true)`.execute(trx);
      return refreshTokens.listSessions(trx, id);
    });
    if (sessions.length !== 1) throw new Error(`expected one session, got ${sessions.length}`);
    await phrases.randomForUser(db, id);
    await phraseSuggestions.countPending(db);
    if (typeof backupSettings !== 'function' || !everyQueryFunctionTakesTheServicesExecutors || !pgTypesAreRead) throw new Error('exports');
    const kyselyBuilds = new Set(
      Object.keys(require.cache)
        .filter((file) => /[\\/]node_modules[\\/]kysely[\\/]/.test(file))
        .map((file) => /[\\/]kysely[\\/]dist[\\/](\w+)[\\/]/.exec(file)?.[1]),
    );
    if ([...kyselyBuilds].join() !== 'cjs') throw new Error(`kysely builds loaded: ${[...kyselyBuilds].join(', ')}`);
    console.log('CommonJS TypeScript service: ok (one kysely, its CommonJS build)');
  } finally {
    await db.destroy();
  }
}

main().catch((error: unknown) => {
  console.error(error);
  process.exitCode = 1;
});
