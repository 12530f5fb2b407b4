import { describe, expect, it } from 'vitest';
import { statementShape, statementShapeLength } from '../../src/migrations/statement-shape.js';

// The query of a session that blocks a migration goes into an error and onto stderr: its
// shape may, its data (a password hash, an email) may not.

const hash = '$argon2id$v=19$m=65536,t=3,p=4$c2FsdA$c2VjcmV0';
const email = 'alice@example.org';

describe('statementShape', () => {
  it('replaces every constant with a placeholder, as PostgreSQL normalizes it', async () => {
    expect(await statementShape(`UPDATE users SET password_hash = '${hash}' WHERE email = '${email}'`)).toBe(
      'UPDATE users SET password_hash = $1 WHERE email = $2',
    );
    expect(await statementShape("SELECT * FROM users WHERE id = 42 AND email = $$alice$$ AND tags @> ARRAY['x']")).toBe(
      'SELECT * FROM users WHERE id = $1 AND email = $2 AND tags @> ARRAY[$3]',
    );
  });

  it('keeps what carries no data: keywords, names, operators, placeholders; whitespace collapsed', async () => {
    expect(await statementShape('SELECT   u.id, count(*)::int\n  FROM users u\n WHERE u.id = $1')).toBe('SELECT u.id, count(*)::int FROM users u WHERE u.id = $1');
  });

  it('drops comments, which PostgreSQL keeps in a normalized statement', async () => {
    expect(await statementShape(`/* reset for ${email} */ UPDATE users SET active = false -- ${email}\n`)).toBe('UPDATE users SET active = $1');
  });

  it("replaces the literals normalization leaves in PREPARE, EXECUTE and COPY, numbered after the statement's own", async () => {
    expect(await statementShape(`PREPARE p AS SELECT * FROM users WHERE email = '${email}' AND id = $1`)).toBe(
      'PREPARE p AS SELECT * FROM users WHERE email = $2 AND id = $1',
    );
    expect(await statementShape(`EXECUTE p('${email}', B'1010', X'ff', U&'d\\0061t')`)).toBe('EXECUTE p($1, $2, $3, $4)');
    expect(await statementShape("COPY users FROM '/home/alice/users.csv'")).toBe('COPY users FROM $1');
  });

  // pg_stat_activity keeps track_activity_query_size bytes (1 kB by default) of a statement:
  // a long one ends inside a literal, which does not parse. libpg-query's normalize would then
  // return its error message, quoting the text, as though it were the result.
  it('gives only the first keyword of a statement cut short, never a part of its text', async () => {
    expect(await statementShape(`UPDATE users SET password_hash = '${hash}' WHERE email = '${email.slice(0, 9)}`)).toBe('UPDATE …');
    expect(await statementShape(`  -- by hand\n  update users set password_hash = '${hash.slice(0, 12)}`)).toBe('UPDATE …');
    expect(await statementShape(`SET app.user = '${email}'`)).toBe('SET …');
  });

  it('gives nothing for text that does not start with a keyword', async () => {
    expect(await statementShape('<insufficient privilege>')).toBe('');
    expect(await statementShape(`${email} '${hash}`)).toBe('');
    expect(await statementShape(`/* ${email}`)).toBe('');
    expect(await statementShape('')).toBe('');
  });

  it('cuts a long shape, marking the cut', async () => {
    const shape = await statementShape(`SELECT ${Array.from({ length: 40 }, (_, i) => `column_${i}`).join(', ')} FROM users`);
    expect(shape).toHaveLength(statementShapeLength);
    expect(shape).toMatch(/^SELECT column_0, column_1, .*…$/);
  });
});
