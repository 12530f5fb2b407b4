// A service's own code against the installed package: its own Kysely (a different 0.28
// patch than the library was built with), its own Transaction<DB>, the query functions.
import { randomUUID } from 'node:crypto';
import { sql, type Kysely, type Transaction } from 'kysely';
import { createDb, DbError, migrationStatus, poolOf, users, incidentTimers, type DB } from '@kennwilliamson/db';
import { backupSettings } from '@kennwilliamson/db/operations';

// Re-exported with declarations on (tsconfig.json): their types must be nameable through the
// package's own entry, or the compiler refuses to write this module's .d.ts (TS2742).
export const findUserByEmail = users.findByEmail;
export const startTimer = incidentTimers.create;

async function register(trx: Transaction<DB>, email: string): Promise<string> {
  const user = await users.create(trx, { email, passwordHash: '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$aGFzaA', displayName: 'Consumer', slug: `consumer-${randomUUID().slice(0, 8)}` });
  await incidentTimers.create(trx, { userId: user.id, notes: 'first' });
  return user.id;
}

const db: Kysely<DB> = createDb({ databaseUrl: process.env.DATABASE_URL! });
try {
  await poolOf(db).ready();
  const email = `consumer-${randomUUID()}@example.org`;
  const id = await db.transaction().execute((trx) => register(trx, email));
  const found = await users.findByEmail(db, email.toUpperCase());
  if (found?.id !== id) throw new Error('the user registered in the service’s transaction was not found');
  const { rows } = await sql<{ n: number }>`SELECT count(*)::int AS n FROM incident_timers WHERE user_id = ${id}`.execute(db);
  if (rows[0]?.n !== 1) throw new Error('the timer created in the same transaction is missing');
  const pending = (await migrationStatus({ databaseUrl: process.env.DATABASE_URL! })).filter((m) => m.state !== 'applied');
  if (pending.length > 0) throw new Error(`unexpected migration states: ${JSON.stringify(pending)}`);
  if (!(new DbError('x') instanceof Error) || typeof backupSettings !== 'function') throw new Error('exports');
  console.log('typescript service: ok');
} finally {
  await db.destroy();
}
