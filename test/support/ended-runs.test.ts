import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, inject, it } from 'vitest';
import { withClient } from '../../src/db/with-client.js';
import { databaseUrlWith } from '../../src/provisioning/database-admin.js';
import { dropEndedRuns, holdRunPrefix, type RunPrefixHold } from './ended-runs.js';

const serverUrl = () => databaseUrlWith(inject('serverUrl'), 'postgres');
const asSuperuser = <T>(work: Parameters<typeof withClient<T>>[1]) => withClient(serverUrl(), work);

// What a run of that prefix makes on its server: databases and its owner role, which owns them.
async function leftovers(prefix: string): Promise<void> {
  await asSuperuser(async (client) => {
    await client.query(`CREATE ROLE ${client.escapeIdentifier(`${prefix}owner`)} LOGIN`);
    for (const name of ['template', 'a1b2c3']) {
      await client.query(`CREATE DATABASE ${client.escapeIdentifier(prefix + name)} TEMPLATE template0 OWNER ${client.escapeIdentifier(`${prefix}owner`)}`);
    }
  });
}

async function namesOf(prefix: string): Promise<string[]> {
  return asSuperuser(async (client) => {
    const { rows } = await client.query<{ name: string }>(
      'SELECT datname AS name FROM pg_database WHERE starts_with(datname, $1) UNION ALL SELECT rolname FROM pg_roles WHERE starts_with(rolname, $1) ORDER BY 1',
      [prefix],
    );
    return rows.map((row) => row.name.slice(prefix.length));
  });
}

describe('the leftovers of ended test runs on an existing server', () => {
  const prefixes: string[] = [];
  const holds: RunPrefixHold[] = [];
  const fakePrefix = () => {
    // A prefix of the runs' form, of a run that never ran: pid 1 is init's.
    const prefix = `kw_1_${randomBytes(4).toString('hex')}_`;
    prefixes.push(prefix);
    return prefix;
  };

  afterEach(async () => {
    for (const hold of holds.splice(0)) await hold.release();
    await asSuperuser(async (client) => {
      for (const prefix of prefixes.splice(0)) {
        for (const name of ['template', 'a1b2c3']) await client.query(`DROP DATABASE IF EXISTS ${client.escapeIdentifier(prefix + name)} WITH (FORCE)`);
        await client.query(`DROP ROLE IF EXISTS ${client.escapeIdentifier(`${prefix}owner`)}`);
      }
    });
  });

  it("drops the databases and the owner role of a run that holds its prefix no more", async () => {
    const prefix = fakePrefix();
    await leftovers(prefix);
    expect(await namesOf(prefix)).toEqual(['a1b2c3', 'owner', 'template']);

    expect(await dropEndedRuns(serverUrl())).toContain(prefix);

    expect(await namesOf(prefix)).toEqual([]);
  });

  it('keeps those of a run that holds its prefix, and drops them once the hold ends with its connection', async () => {
    const prefix = fakePrefix();
    const hold = await holdRunPrefix(serverUrl(), prefix);
    holds.push(hold);
    await leftovers(prefix);

    expect(await dropEndedRuns(serverUrl())).not.toContain(prefix);
    expect(await namesOf(prefix)).toEqual(['a1b2c3', 'owner', 'template']);

    await hold.release();
    expect(await dropEndedRuns(serverUrl())).toContain(prefix);
    expect(await namesOf(prefix)).toEqual([]);
  });

  it("keeps this run's own databases and owner role: the run holds its prefix from its start", async () => {
    const ownPrefix = inject('databasePrefix');
    const before = await namesOf(ownPrefix);
    expect(before).toEqual(expect.arrayContaining(['template', 'owner']));

    expect(await dropEndedRuns(serverUrl())).not.toContain(ownPrefix);

    expect(await namesOf(ownPrefix)).toEqual(expect.arrayContaining(['template', 'owner']));
  });

  it('refuses to hold a prefix that another run holds', async () => {
    const prefix = fakePrefix();
    holds.push(await holdRunPrefix(serverUrl(), prefix));

    await expect(holdRunPrefix(serverUrl(), prefix)).rejects.toThrow(`another run holds the prefix ${prefix}`);
  });
});
