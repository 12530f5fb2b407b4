import { describe, expect, it } from 'vitest';
import { toolErrorText } from '../../../src/operations/pg-tools/pg-tool-process.js';

describe('toolErrorText', () => {
  it('keeps errors and hints, drops the chatter', () => {
    const stderr = [
      'pg_dump: dumping contents of table "public.users"',
      'pg_dump: error: connection to server failed: FATAL:  password authentication failed for user "app"',
      'HINT:  Check the password.',
    ].join('\n');
    expect(toolErrorText(stderr)).toBe(
      'pg_dump: error: connection to server failed: FATAL:  password authentication failed for user "app"\nHINT:  Check the password.',
    );
  });

  it('never repeats row values or statement text (DETAIL, LINE, CONTEXT), which can hold password hashes', () => {
    const stderr = [
      'psql:<stdin>:42: ERROR:  new row for relation "users" violates check constraint "users_display_name_length"',
      'DETAIL:  Failing row contains (0190…, a@example.org, $argon2id$v=19$secret-hash, , a).',
      "LINE 1: INSERT INTO users VALUES ('$argon2id$v=19$secret-hash', ...",
      '        ^',
      'CONTEXT:  COPY users, line 1',
    ].join('\n');
    const text = toolErrorText(stderr);
    expect(text).toContain('violates check constraint "users_display_name_length"');
    expect(text).not.toContain('secret-hash');
    expect(text).not.toContain('COPY users');
  });
});
