import { randomBytes } from 'node:crypto';
import { describe, it, type TestContext } from 'vitest';
import { ensureAppRole } from '../../src/provisioning/app-role.js';
import { recreateDatabase } from '../../src/provisioning/database-admin.js';
import { provisionDatabase } from '../../src/provisioning/provision-database.js';
import { stallingProxyFor } from '../support/stalling-proxy.js';
import { createTestDatabase } from '../support/test-database.js';
import { withClient } from '../../src/db/with-client.js';

// setup --admin, the release step's grants and db:reset must end, whatever the server does: a
// statement of theirs that goes unanswered (a backend frozen, or a path that stalls while its
// kernel acknowledges, so TCP never tells) fails at a deadline, on the first attempt too, which
// no blocker monitor watches yet. The proxy lets every other round trip through.
async function stalledAt(pattern: RegExp, { onTestFinished }: TestContext) {
  const database = await createTestDatabase();
  onTestFinished(() => database.drop());
  const { proxy } = await stallingProxyFor(database.url, onTestFinished);
  return { database, through: proxy.through, stalled: proxy.stallOn(pattern) };
}

describe.concurrent('provisioning against a server that stops answering', () => {
  it("setup --admin's transaction fails at a deadline when the wait for its lock goes unanswered", async (context) => {
    const { database, through, stalled } = await stalledAt(/pg_advisory_xact_lock/, context);
    const owner = { user: `kw_owner_${randomBytes(4).toString('hex')}`, password: randomBytes(8).toString('hex') };

    const error = await provisionDatabase({ adminUrl: through(database.url), owner }).catch((e: unknown) => e);

    await stalled;
    context.expect((error as Error).message).toMatch(/no answer to SELECT PG_ADVISORY_XACT_LOCK within \d+ ms; the connection was closed/);
    context.expect(await withClient(database.url, async (client) => (await client.query('SELECT 1 FROM pg_roles WHERE rolname = $1', [owner.user])).rowCount)).toBe(0);
  });

  it("the release step's grants fail at a deadline when the wait for their lock goes unanswered", async (context) => {
    const { database, through, stalled } = await stalledAt(/pg_advisory_xact_lock/, context);

    const error = await ensureAppRole({ databaseUrl: through(database.ownerUrl), user: `kw_app_${randomBytes(4).toString('hex')}`, lockTimeoutMs: 1_000 }).catch(
      (e: unknown) => e,
    );

    await stalled;
    context.expect((error as Error).message).toMatch(/no answer to SELECT PG_CATALOG.PG_ADVISORY_XACT_LOCK within \d+ ms; the connection was closed/);
  });

  it('db:reset fails at a deadline, dropping nothing, when its look at the role goes unanswered', async (context) => {
    const { database, through, stalled } = await stalledAt(/rolcreatedb/, context);

    const error = await recreateDatabase(through(database.url)).catch((e: unknown) => e);

    await stalled;
    context.expect(error).toMatchObject({ name: 'ConnectionError', reason: 'deadline' });
    context.expect((error as Error).message).toContain('no answer to the look at the role within 10000 ms');
    context.expect(await withClient(database.url, async (client) => (await client.query('SELECT 1')).rowCount)).toBe(1);
  });
});
