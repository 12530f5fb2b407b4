import { describe, expect, it } from 'vitest';
import { optionMs } from '../../src/db/option-ms.js';
import { ConfigError } from '../../src/errors.js';
import { migrate } from '../../src/migrations/migrator.js';
import { restoreDatabase } from '../../src/operations/restore/restore.js';

// A bound no timer can hold fires after 1 ms in Node: a statement's session was looked at,
// with a fresh login each time, some hundred times a second.
describe('optionMs', () => {
  it.each([Number.NaN, Number.POSITIVE_INFINITY, 0, -5, 2 ** 31])('refuses %s, naming the option', (value) => {
    expect(() => optionMs('serverStallTimeoutMs', value)).toThrow(ConfigError);
    expect(() => optionMs('serverStallTimeoutMs', value)).toThrow(`serverStallTimeoutMs must be a number of milliseconds from 1 to 2147483647, got ${value}`);
  });

  it('takes a duration a timer holds, in whole milliseconds', () => {
    expect(optionMs('serverStallTimeoutMs', 60_000)).toBe(60_000);
    expect(optionMs('serverStallTimeoutMs', 1.6)).toBe(2);
  });

  // Refused before any connection: the URL reaches nothing.
  const nowhere = 'postgresql://kennwilliamson:secret@127.0.0.1:1/kennwilliamson';
  it('is checked by migrate and restoreDatabase before they connect', async () => {
    await expect(migrate({ databaseUrl: nowhere, serverStallTimeoutMs: Number.POSITIVE_INFINITY })).rejects.toThrow(ConfigError);
    await expect(
      restoreDatabase({ databaseUrl: nowhere, backup: { file: '/nonexistent.dump' } as never, serverStallTimeoutMs: Number.NaN }),
    ).rejects.toThrow(ConfigError);
  });
});
